"""Subsidy programmes, their review rounds, the requests applicants submit and the reviews that score them."""

from __future__ import annotations

from statistics import fmean

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sovstack.compute.schemas import (
    ProgrammeCreate,
    ProgrammePublic,
    RequestCreate,
    RequestPublic,
    ReviewCreate,
    RoundCreate,
    RoundPublic,
)
from sovstack.compute.tables import AllocationRound, ComputeRequest, Programme, Review
from sovstack.core import audit, identity
from sovstack.core.context import Principal
from sovstack.core.db import flush_unique
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused
from sovstack.core.jurisdictions import catalogue

APPLICANTS = ("org_admin", "steward", "reviewer", "member")


def list_programmes(session: Session) -> list[Programme]:
    return list(session.scalars(select(Programme).order_by(Programme.name)))


def get_programme(session: Session, ref: int | str) -> Programme:
    query = select(Programme).where(Programme.id == ref if isinstance(ref, int) else Programme.name == ref)
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"no programme {ref!r}", field="programme")
    return found


def create_programme(session: Session, who: Principal, data: ProgrammeCreate, home: str) -> Programme:
    who.require_admin("compute.programmes.create", data.name)
    values = data.model_dump()
    values["eligible_jurisdictions"] = data.eligible_jurisdictions or [home]
    values["caps"] = data.caps.model_dump()
    floors = sum(data.category_floor.values())
    if floors > data.budget:
        raise BadInput(f"the category floors add up to {floors:,.0f}, more than the budget {data.budget:,.0f}",
                       field="category_floor")
    for cat, floor in data.category_floor.items():
        if floor > data.category_ceiling.get(cat, float("inf")):
            raise BadInput(f"{cat}: floor {floor:,.0f} is above its ceiling", field="category_floor")
    programme = Programme(**values)
    session.add(programme)
    flush_unique(session, "programme", "name", data.name)
    audit.record(session, actor=who.actor, action="compute.programmes.create", target=f"programme:{programme.id}",
                 detail=data.model_dump(mode="json"))
    return programme


def lock(session: Session, *programmes: Programme) -> None:
    """Hold the programmes' rows until commit (PostgreSQL), so two solves of one programme never interleave.

    Always in id order, so two callers locking several programmes cannot deadlock. SQLite has one
    writer at a time already and ignores the clause.
    """
    ids = sorted({p.id for p in programmes})
    if ids:
        session.execute(select(Programme.id).where(Programme.id.in_(ids)).order_by(Programme.id).with_for_update())


def programme_public(p: Programme) -> ProgrammePublic:
    return ProgrammePublic.model_validate(p, from_attributes=True)


def rate_for(programme: Programme, category: str) -> float:
    return programme.category_rates.get(category, programme.subsidy_rate)


# Rounds ----------------------------------------------------------------------------------------

def open_round(session: Session, who: Principal, programme_ref: str, data: RoundCreate) -> AllocationRound:
    programme = get_programme(session, programme_ref)
    who.require_admin("compute.rounds.create", f"programme:{programme.id}")
    if current_round(session, programme) is not None:
        raise Conflict(f"programme {programme.name} already has an open round; allocate it first", field="programme")
    number = (session.scalar(select(func.max(AllocationRound.number))
                             .where(AllocationRound.programme_id == programme.id)) or 0) + 1
    rnd = AllocationRound(programme_id=programme.id, number=number, review_deadline=data.review_deadline)
    session.add(rnd)
    session.flush()
    audit.record(session, actor=who.actor, action="compute.rounds.create", target=f"round:{rnd.id}",
                 detail={"programme": programme.name, "number": number})
    return rnd


def current_round(session: Session, programme: Programme) -> AllocationRound | None:
    return session.scalar(select(AllocationRound).where(AllocationRound.programme_id == programme.id,
                                                        AllocationRound.status == "open"))


def get_round(session: Session, programme_ref: str, number: int | None = None) -> AllocationRound:
    """A programme's round by number, or its newest."""
    programme = get_programme(session, programme_ref)
    query = select(AllocationRound).where(AllocationRound.programme_id == programme.id)
    query = query.where(AllocationRound.number == number) if number else query.order_by(
        AllocationRound.number.desc()).limit(1)
    found = session.scalar(query)
    if found is None:
        raise NotFound(f"programme {programme.name} has no round {number or ''}".rstrip(), field="round")
    return found


def list_rounds(session: Session, programme_ref: str) -> list[AllocationRound]:
    programme = get_programme(session, programme_ref)
    return list(session.scalars(select(AllocationRound).where(AllocationRound.programme_id == programme.id)
                                .order_by(AllocationRound.number)))


def round_public(session: Session, rnd: AllocationRound) -> RoundPublic:
    requests = round_requests(session, rnd)
    return RoundPublic(id=rnd.id, programme=rnd.programme.name, number=rnd.number,
                       review_deadline=rnd.review_deadline, status=rnd.status, requests=len(requests),
                       reviewed=sum(1 for r in requests if r.reviews), result=rnd.result, solved_at=rnd.solved_at)


def round_requests(session: Session, rnd: AllocationRound) -> list[ComputeRequest]:
    return list(session.scalars(select(ComputeRequest).where(ComputeRequest.round_id == rnd.id)
                                .order_by(ComputeRequest.id)))


# Requests --------------------------------------------------------------------------------------

def submit_request(session: Session, who: Principal, data: RequestCreate) -> ComputeRequest:
    """Check the applicant's eligibility and the request's shape; a small request is fast-tracked."""
    programme = get_programme(session, data.programme)
    org = identity.get_organisation(session, data.organisation)
    who.require_role(org.id, *APPLICANTS, action="compute.requests.create", target=f"programme:{programme.id}")
    _check_eligible(programme, org.kind, org.jurisdiction, org.name)
    if data.latest_period >= programme.periods:
        raise BadInput(f"the programme has periods 0–{programme.periods - 1}", field="latest_period")
    fast = 0 < data.gpu_hours <= programme.fast_track_gpu_hours
    rnd = None if fast else current_round(session, programme)
    if not fast and rnd is None:
        raise Conflict(f"programme {programme.name} has no open round; requests above "
                       f"{programme.fast_track_gpu_hours:g} GPU-hours wait for the next one", field="programme")
    request = ComputeRequest(programme_id=programme.id, round_id=rnd.id if rnd else None, organisation_id=org.id,
                             user_id=who.user_id, category=org.kind, fast_track=fast,
                             **data.model_dump(exclude={"programme", "organisation"}))
    session.add(request)
    session.flush()
    audit.record(session, actor=who.actor, action="compute.requests.create", target=f"request:{request.id}",
                 detail={"programme": programme.name, "organisation": org.name, "gpu_hours": data.gpu_hours,
                         "fast_track": fast})
    return request


def _check_eligible(programme: Programme, kind: str, jurisdiction: str, name: str) -> None:
    reasons = []
    if kind not in programme.eligible_kinds:
        reasons.append(f"{name} is a {kind} organisation; {programme.name} funds {', '.join(programme.eligible_kinds)}")
    places = catalogue().expand(programme.eligible_jurisdictions)
    if jurisdiction not in places:
        reasons.append(f"{name} is in {jurisdiction}; {programme.name} funds organisations in "
                       f"{', '.join(programme.eligible_jurisdictions)}")
    if reasons:
        raise Refused(f"not eligible: {reasons[0]}", action="compute.requests.create",
                      target=f"programme:{programme.id}", reasons=reasons)


def get_request(session: Session, request_id: int) -> ComputeRequest:
    found = session.get(ComputeRequest, request_id)
    if found is None:
        raise NotFound(f"no request {request_id}", field="request")
    return found


def can_see(who: Principal, request: ComputeRequest) -> bool:
    return who.acts_as_admin or who.has_role(request.organisation_id) or is_reviewer(who)


def visible_request(session: Session, who: Principal, request_id: int) -> ComputeRequest:
    request = get_request(session, request_id)
    if not can_see(who, request):
        raise NotFound(f"no request {request_id}", field="request")
    return request


def list_requests(session: Session, who: Principal, *, programme: str | None = None,
                  status: str | None = None) -> list[ComputeRequest]:
    query = select(ComputeRequest).order_by(ComputeRequest.id)
    if programme:
        query = query.where(ComputeRequest.programme_id == get_programme(session, programme).id)
    if status:
        query = query.where(ComputeRequest.status == status)
    return [r for r in session.scalars(query) if can_see(who, r)]


def withdraw_request(session: Session, who: Principal, request_id: int) -> ComputeRequest:
    request = visible_request(session, who, request_id)
    who.require_role(request.organisation_id, *APPLICANTS, action="compute.requests.withdraw",
                     target=f"request:{request.id}")
    if request.status != "submitted":
        raise Conflict(f"request {request.id} is {request.status}; only a submitted request can be withdrawn",
                       field="request")
    request.status = "withdrawn"
    audit.record(session, actor=who.actor, action="compute.requests.withdraw", target=f"request:{request.id}")
    return request


def merit(request: ComputeRequest) -> float | None:
    return round(fmean(r.score for r in request.reviews), 3) if request.reviews else None


def request_public(r: ComputeRequest) -> RequestPublic:
    return RequestPublic(id=r.id, programme=r.programme.name, round=r.round_id, organisation=r.organisation.name,
                         category=r.category, title=r.title, proposal=r.proposal, gpu_types=list(r.gpu_types),
                         gpus_per_job=r.gpus_per_job, gpu_hours=r.gpu_hours, earliest_period=r.earliest_period,
                         latest_period=r.latest_period, data_classification=r.data_classification,
                         fast_track=r.fast_track, status=r.status, reviews=len(r.reviews), merit=merit(r),
                         explanation=r.explanation, created_at=r.created_at)


# Reviews ---------------------------------------------------------------------------------------

def is_reviewer(who: Principal) -> bool:
    return who.acts_as_admin or any("reviewer" in roles for roles in who.roles.values())


def review_queue(session: Session, who: Principal) -> list[ComputeRequest]:
    """Requests in open rounds this reviewer may score and has not scored yet."""
    if not is_reviewer(who):
        raise Refused("only reviewers see the review queue", action="compute.reviews.queue",
                      reasons=[f"{who.email} holds no reviewer role"])
    query = (select(ComputeRequest).join(AllocationRound, ComputeRequest.round_id == AllocationRound.id)
             .where(AllocationRound.status == "open", ComputeRequest.status == "submitted")
             .order_by(ComputeRequest.id))
    return [r for r in session.scalars(query)
            if not who.roles.get(r.organisation_id) and all(rv.reviewer_id != who.user_id for rv in r.reviews)]


def score(session: Session, who: Principal, request_id: int, data: ReviewCreate) -> Review:
    request = get_request(session, request_id)
    target = f"request:{request.id}"
    if not is_reviewer(who):
        raise Refused("only reviewers score requests", action="compute.reviews.create", target=target,
                      reasons=[f"{who.email} holds no reviewer role"])
    if who.roles.get(request.organisation_id):
        raise Refused("conflict of interest: reviewers may not score their own organisation's requests",
                      action="compute.reviews.create", target=target,
                      reasons=[f"{who.email} is a member of {request.organisation.name}"])
    if who.user_id is None:
        raise Refused("reviews are signed by a person, not by the operator's shell", action="compute.reviews.create",
                      target=target, reasons=["use --as a reviewer's email"])
    if request.round_id is None or request.status != "submitted":
        raise Conflict(f"request {request.id} is {request.status}" + (" (fast-tracked)" if request.fast_track else "")
                       + "; it is not under review", field="request")
    review = Review(request_id=request.id, reviewer_id=who.user_id, score=data.score, comment=data.comment)
    session.add(review)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"you already scored request {request.id}", field="request") from exc
    audit.record(session, actor=who.actor, action="compute.reviews.create", target=target,
                 detail={"score": data.score})
    session.refresh(request)
    return review


def review_progress(session: Session, rnd: AllocationRound) -> dict[str, int]:
    """How far the reviewers are: requests with no, one, or several scores."""
    counts = {"requests": 0, "unreviewed": 0, "one_review": 0, "several_reviews": 0}
    for r in round_requests(session, rnd):
        if r.status == "withdrawn":
            continue
        counts["requests"] += 1
        n = len(r.reviews)
        counts["unreviewed" if n == 0 else "one_review" if n == 1 else "several_reviews"] += 1
    return counts
