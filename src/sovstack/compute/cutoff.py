"""The cut-off drill: withdraw a provider's, a jurisdiction's or a chip vendor's capacity, re-solve, report, undo.

It answers the question a programme must be able to answer before it happens: if this supplier left
tomorrow, or an export licence were revoked, whose work stops, what can move elsewhere, and how much
did the concentration caps limit the damage.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sovstack.compute import programmes, providers, rounds
from sovstack.compute.schemas import CutoffCreate, CutoffPublic
from sovstack.compute.tables import Allocation, ComputeOffer, ComputeRequest, Cutoff, Programme
from sovstack.core import audit
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, Conflict, NotFound


def _selector(data: CutoffCreate) -> tuple[str, str]:
    for key in ("provider", "jurisdiction", "chip_vendor"):
        value = getattr(data, key)
        if value:
            return key, value
    raise BadInput("name a provider, a jurisdiction or a chip vendor", field="provider")


def matching_offers(session: Session, selector: str, value: str) -> list[ComputeOffer]:
    if selector == "provider":
        providers.get_provider(session, value)  # an unknown name is an error, not an empty drill
    found = []
    for o in providers.list_offers(session, include_withdrawn=False):
        p = o.provider
        if (selector == "provider" and p.name == value
                or selector == "jurisdiction" and value in (p.party.jurisdiction, p.party.parent_jurisdiction,
                                                            p.datacentre_jurisdiction, p.control_plane_jurisdiction)
                or selector == "chip_vendor" and o.chip_vendor.lower() == value.lower()):
            found.append(o)
    return found


def _live(session: Session) -> list[Allocation]:
    return list(session.scalars(select(Allocation).where(Allocation.status.in_(rounds.LIVE))))


def exposure(live: list[Allocation], offer_ids: set[int]) -> dict[str, dict[str, object]]:
    """Per programme: GPU-hours allocated, how much of it sits on the withdrawn offers, and the caps."""
    total: dict[int, float] = defaultdict(float)
    hit: dict[int, float] = defaultdict(float)
    by_id: dict[int, Programme] = {}
    for a in live:
        prog = a.request.programme
        by_id[prog.id] = prog
        total[prog.id] += a.gpu_hours
        if a.offer_id in offer_ids:
            hit[prog.id] += a.gpu_hours
    return {p.name: {"allocated_gpu_hours": round(total[pid], 2), "exposed_gpu_hours": round(hit[pid], 2),
                     "exposed_share": round(hit[pid] / total[pid], 4) if total[pid] else 0.0, "caps": p.caps}
            for pid, p in by_id.items() if hit[pid]}


def run(session: Session, who: Principal, data: CutoffCreate, home: str) -> CutoffPublic:
    """Withdraw the matching capacity and re-solve; with ``dry_run``, report and change nothing."""
    selector, value = _selector(data)
    who.require_admin("compute.cutoff", f"{selector}:{value}")
    offers = matching_offers(session, selector, value)
    if not offers:
        raise NotFound(f"no live offer matches {selector} {value!r}", field=selector)
    offer_ids = {o.id for o in offers}
    programmes.lock(session, *programmes.list_programmes(session))
    live = _live(session)
    displaced = [a for a in live if a.offer_id in offer_ids]
    plans = rounds.plan_for(session, [a.request for a in displaced], home, excluded_offers=offer_ids,
                            dropped={a.id for a in displaced}, emergency=True)
    report = _report(live, displaced, plans, exposure(live, offer_ids))
    if data.dry_run:
        audit.record(session, actor=who.actor, action="compute.cutoff.dry_run", target=f"{selector}:{value}",
                     detail={"displaced": len(displaced), "lost_gpu_hours": report["lost_gpu_hours"]})
        return CutoffPublic(id=None, selector=selector, value=value, offers=sorted(offer_ids), report=report,
                            created_by=who.actor, created_at=None, restored_at=None)
    drill = Cutoff(selector=selector, value=value, offers=sorted(offer_ids), created_by=who.actor, report=report,
                   undo={"allocations": {str(a.id): a.status for a in live},
                         "requests": {str(a.request_id): [a.request.status, a.request.explanation] for a in live},
                         "first_new": (session.scalar(select(func.max(Allocation.id))) or 0) + 1})
    session.add(drill)
    session.flush()
    for o in offers:
        o.withdrawn_by = drill.id
    for a in displaced:
        a.status, a.reason = "displaced", f"cut-off drill {drill.id}: {selector} {value} withdrawn"
    for solved in plans:
        if solved.feasible:
            rounds.apply(session, solved, who.actor, "compute.cutoff.resolve")
    for a in displaced:  # displaced and not re-placed: say why
        if a.request.status != "allocated":
            a.request.status = "unallocated"
    audit.record(session, actor=who.actor, action="compute.cutoff", target=f"cutoff:{drill.id}",
                 detail={"selector": selector, "value": value, "offers": sorted(offer_ids),
                         "displaced": len(displaced), "lost_gpu_hours": report["lost_gpu_hours"]})
    return cutoff_public(drill)


def _report(live: list[Allocation], displaced: list[Allocation], plans: list[rounds.Plan],
            before: dict[str, dict[str, object]]) -> dict[str, object]:
    placed = {p.request: (p, solved) for solved in plans if solved.feasible for p in solved.result.placements}
    where_before = {a.request_id: (a.offer_id, a.start_period) for a in live}
    rows, lost = [], 0.0
    for a in displaced:
        found = placed.get(a.request_id)
        offer = found[1].offers[found[0].offer] if found else None
        if offer is None:
            lost += a.gpu_hours
        why = None
        if found is None:
            why = next((_why_not(s, a.request_id) for s in plans if a.request_id in {r.id for r in s.decided}),
                       "no feasible re-solve")
        rows.append({"request": a.request_id, "title": a.request.title, "organisation": a.request.organisation.name,
                     "from": f"{a.offer.provider.name} offer {a.offer_id} ({a.offer.gpu_type})",
                     "gpu_hours": a.gpu_hours, "was": a.status,
                     "re_placed": f"{offer.provider.name} offer {offer.id} ({offer.gpu_type})" if offer else None,
                     "why_not": why})
    displaced_ids = {a.request_id for a in displaced}
    moved_others = sorted(p.request for p, _ in placed.values()
                          if p.request not in displaced_ids and p.request in where_before
                          and where_before[p.request] != (p.offer, p.start))
    total = sum(a.gpu_hours for a in displaced)
    return {"displaced": rows, "displaced_gpu_hours": round(total, 2),
            "re_placed": sum(1 for r in rows if r["re_placed"]), "lost_gpu_hours": round(lost, 2),
            "moved_others": moved_others, "exposure": before,
            "solver": [{"programme": s.programme.name, "status": s.result.status, "gap": round(s.result.gap, 6),
                        "seconds": round(s.result.seconds, 3)} for s in plans],
            "suspended": [{"programme": s.programme.name, "rules": list(s.suspended),
                           "because": list(s.first_conflicts)} for s in plans if s.suspended],
            "caps_note": [_caps_note(name, e) for name, e in before.items()]
            + [f"{s.programme.name}: the re-solve with every rule was infeasible "
               f"({'; '.join(s.first_conflicts)}), so the displaced requests were re-placed without "
               f"{' and '.join(s.suspended)}" for s in plans if s.suspended]}


def _why_not(solved: rounds.Plan, request_id: int) -> str:
    if not solved.feasible:
        return "the re-solve was infeasible: " + "; ".join(solved.result.conflicts)
    return str(rounds.explanation(solved, request_id)["text"])


def _caps_note(programme: str, e: dict[str, object]) -> str:
    caps = e["caps"] if isinstance(e["caps"], dict) else {}
    share = float(e["exposed_share"])  # type: ignore[arg-type]
    held = [f"{kind} {cap:.0%}" for kind, cap in caps.items() if cap is not None]
    return (f"{programme}: {share:.1%} of allocated GPU-hours were on the withdrawn capacity; "
            f"caps in force: {', '.join(held) or 'none'}")


def restore(session: Session, who: Principal, cutoff_id: int) -> CutoffPublic:
    """Undo a drill: the capacity returns and every allocation and request is as it was before."""
    drill = session.get(Cutoff, cutoff_id)
    if drill is None:
        raise NotFound(f"no cut-off drill {cutoff_id}", field="cutoff")
    who.require_admin("compute.cutoff.restore", f"cutoff:{drill.id}")
    if drill.restored_at is not None:
        raise Conflict(f"cut-off drill {drill.id} was already restored at {drill.restored_at}", field="cutoff")
    later = session.scalar(select(Cutoff.id).where(Cutoff.id > drill.id, Cutoff.restored_at.is_(None)))
    if later is not None:
        raise Conflict(f"restore cut-off drill {later} first: drills are undone newest first", field="cutoff")
    for o in session.scalars(select(ComputeOffer).where(ComputeOffer.withdrawn_by == drill.id)):
        o.withdrawn_by = None
    for a in session.scalars(select(Allocation).where(Allocation.id >= int(drill.undo["first_new"]))):
        if a.status in rounds.LIVE:
            a.status, a.reason = "superseded", f"cut-off drill {drill.id} restored"
    for key, status in drill.undo["allocations"].items():
        before = session.get(Allocation, int(key))
        if before is not None:
            before.status, before.reason = status, ""
    for key, (status, explanation) in drill.undo["requests"].items():
        r = session.get(ComputeRequest, int(key))
        if r is not None:
            r.status, r.explanation = status, explanation
    drill.restored_at = utcnow()
    audit.record(session, actor=who.actor, action="compute.cutoff.restore", target=f"cutoff:{drill.id}")
    return cutoff_public(drill)


def list_cutoffs(session: Session, who: Principal) -> list[Cutoff]:
    """Every cut-off drill, newest first: the operator's, since reports name every organisation's requests."""
    who.require_admin("compute.cutoff.list", "cutoffs")
    return list(session.scalars(select(Cutoff).order_by(Cutoff.id.desc())))


def cutoff_public(c: Cutoff) -> CutoffPublic:
    return CutoffPublic(id=c.id, selector=c.selector, value=c.value, offers=list(c.offers), report=c.report,
                        created_by=c.created_by, created_at=c.created_at, restored_at=c.restored_at)
