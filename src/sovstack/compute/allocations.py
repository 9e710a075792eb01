"""Allocations after the solve: providers accept or decline, idle ones are flagged and reclaimed."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.compute import programmes, providers, rounds
from sovstack.compute.schemas import AllocationDecision, AllocationPublic
from sovstack.compute.tables import Allocation, ComputeOffer, ComputeProvider, ComputeRequest
from sovstack.core import audit
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.errors import Conflict, NotFound


def get_allocation(session: Session, allocation_id: int) -> Allocation:
    found = session.get(Allocation, allocation_id)
    if found is None:
        raise NotFound(f"no allocation {allocation_id}", field="allocation")
    return found


def can_see(who: Principal, a: Allocation) -> bool:
    org = a.offer.provider.organisation_id
    return programmes.can_see(who, a.request) or (org is not None and who.has_role(org))


def list_allocations(session: Session, who: Principal, *, programme: str | None = None, provider: str | None = None,
                     status: str | None = None) -> list[Allocation]:
    query = (select(Allocation).join(Allocation.request).join(Allocation.offer).join(ComputeOffer.provider)
             .order_by(Allocation.id))
    if programme:
        query = query.where(ComputeRequest.programme_id == programmes.get_programme(session, programme).id)
    if provider:
        query = query.where(ComputeProvider.name == provider)
    if status:
        query = query.where(Allocation.status == status)
    return [a for a in session.scalars(query) if can_see(who, a)]


def start_date(a: Allocation) -> date:
    return providers.period_bounds(a.request.programme, a.start_period)[0]


def is_idle(a: Allocation, today: date | None = None) -> bool:
    """Accepted, started more than the programme's idle days ago, and nothing used yet."""
    today = today or utcnow().date()
    return (a.status == "accepted" and a.used_gpu_hours == 0
            and start_date(a) + timedelta(days=a.request.programme.idle_days) <= today)


def allocation_public(a: Allocation, today: date | None = None) -> AllocationPublic:
    return AllocationPublic(id=a.id, request_id=a.request_id, request=a.request.title,
                            organisation=a.request.organisation.name, offer_id=a.offer_id,
                            provider=a.offer.provider.name, gpu_type=a.offer.gpu_type, start_period=a.start_period,
                            periods=list(a.periods), gpus=a.gpus, gpu_hours=a.gpu_hours,
                            used_gpu_hours=a.used_gpu_hours, price=a.price, cost=a.cost, subsidy=a.subsidy,
                            applicant_share=round(a.cost - a.subsidy, 4), status=a.status, reason=a.reason,
                            idle=is_idle(a, today), created_at=a.created_at)


def decide(session: Session, who: Principal, allocation_id: int, data: AllocationDecision,
           home: str) -> dict[int, str]:
    """The provider accepts, or declines with a reason; a decline re-solves around the declined offer."""
    a = get_allocation(session, allocation_id)
    action = f"compute.allocations.{data.decision}"
    providers.require_staff(who, a.offer.provider, action)
    programmes.lock(session, a.request.programme)
    session.refresh(a)  # as it is now that no other solve of the programme can change it
    if a.status != "proposed":
        raise Conflict(f"allocation {a.id} is {a.status}; only a proposed allocation can be accepted or declined",
                       field="allocation")
    a.decided_at = utcnow()
    audit.record(session, actor=who.actor, action=action, target=f"allocation:{a.id}",
                 detail={"reason": data.reason} if data.reason else None)
    if data.decision == "accept":
        a.status = "accepted"
        return {}
    a.status, a.reason = "declined", data.reason
    session.flush()
    return rounds.resolve_for(session, [a.request], home, who.actor, "compute.allocations.resolve")


def reclaim(session: Session, who: Principal, allocation_id: int, today: date | None = None) -> Allocation:
    """Take back an idle allocation: its capacity and unspent subsidy return to the programme."""
    a = get_allocation(session, allocation_id)
    who.require_admin("compute.allocations.reclaim", f"allocation:{a.id}")
    if not is_idle(a, today):
        raise Conflict(f"allocation {a.id} is not idle (status {a.status}, {a.used_gpu_hours:g} GPU-hours used, "
                       f"started {start_date(a)}, idle after {a.request.programme.idle_days} days)",
                       field="allocation")
    a.status, a.reason = "reclaimed", f"idle since {start_date(a)}"
    a.request.status = "unallocated"
    a.request.explanation = {"allocated": False, "binding": ["reclaimed"],
                             "text": f"allocation {a.id} was reclaimed: unused {a.request.programme.idle_days} "
                                     f"days after it started on {start_date(a)}"}
    audit.record(session, actor=who.actor, action="compute.allocations.reclaim", target=f"allocation:{a.id}")
    return a
