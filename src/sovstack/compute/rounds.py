"""From the database to the allocator and back: build a round, solve it, save the result as one unit.

A *plan* is a solved round that has not touched the database yet; ``apply`` saves it. Everything that
re-solves (an allocation round, a fast-track request, a provider's decline, a cut-off drill) goes
through ``plan`` and ``apply``, so a failure or an infeasible round never leaves a partial allocation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.compute import model as alloc  # the solver's types; the solver itself is loaded when a round runs
from sovstack.compute import programmes, providers
from sovstack.compute.schemas import RequestCreate
from sovstack.compute.tables import Allocation, AllocationRound, ComputeOffer, ComputeRequest, Programme
from sovstack.core import audit, policy
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.errors import Conflict

LIVE = ("proposed", "accepted")
STABILITY_BONUS = 0.25  # a re-solve keeps a request where it was unless moving gains more than a quarter of it


@dataclass
class Plan:
    """A solved round, not yet saved."""

    programme: Programme
    rnd: AllocationRound | None
    decided: list[ComputeRequest]
    result: alloc.Result
    offers: dict[int, ComputeOffer]
    policy_reasons: dict[int, list[str]] = field(default_factory=dict)
    suspended: tuple[str, ...] = ()         # rules a fallback re-solve had to drop
    first_conflicts: tuple[str, ...] = ()   # why the re-solve with every rule was infeasible

    @property
    def feasible(self) -> bool:
        return self.result.status != "infeasible"


def live_allocations(session: Session, programme: Programme) -> list[Allocation]:
    query = (select(Allocation).join(Allocation.request)
             .where(ComputeRequest.programme_id == programme.id, Allocation.status.in_(LIVE)))
    return list(session.scalars(query))


def declined_pairs(session: Session, requests: Iterable[ComputeRequest]) -> set[tuple[int, int]]:
    ids = [r.id for r in requests]
    rows = session.execute(select(Allocation.request_id, Allocation.offer_id)
                           .where(Allocation.request_id.in_(ids), Allocation.status == "declined"))
    return {(r, o) for r, o in rows}


def committed_elsewhere(session: Session, programme: Programme) -> dict[int, int]:
    """Per offer, the most GPUs other programmes hold in any one period (their placements are not ours to move)."""
    query = (select(Allocation).join(Allocation.request)
             .where(ComputeRequest.programme_id != programme.id, Allocation.status.in_(LIVE)))
    per_period: dict[tuple[int, int], int] = defaultdict(int)
    for a in session.scalars(query):
        for t in a.periods:
            per_period[(a.offer_id, t)] += a.gpus  # periods of different programmes are compared as weeks
    peak: dict[int, int] = defaultdict(int)
    for (offer_id, _), gpus in per_period.items():
        peak[offer_id] = max(peak[offer_id], gpus)
    return peak


def _offers(session: Session, programme: Programme, home: str,
            excluded: set[int]) -> tuple[dict[int, alloc.Offer], dict[int, ComputeOffer]]:
    """The offers a solve may use, as the allocator sees them and as rows (for prices and policy)."""
    taken = committed_elsewhere(session, programme)
    found: dict[int, alloc.Offer] = {}
    rows: dict[int, ComputeOffer] = {}
    for o in providers.list_offers(session, include_withdrawn=False):
        periods = providers.offer_periods(programme, o)
        gpus = o.gpu_count - taken.get(o.id, 0)
        if o.delivery != "delivered" or o.id in excluded or not periods or gpus <= 0:
            continue
        p = o.provider
        found[o.id] = alloc.Offer(id=o.id, provider=p.name, group=p.corporate_group,
                                  foreign=providers.foreign_controlled(p, home), chip_vendor=o.chip_vendor,
                                  gpu_type=o.gpu_type, gpus=gpus, price=o.price, periods=periods)
        rows[o.id] = o
    return found, rows


def _eligibility(doc: policy.PolicyDocument, r: ComputeRequest, offers: dict[int, ComputeOffer],
                 declined: set[tuple[int, int]]) -> tuple[frozenset[int], list[str]]:
    """Offer ids this request may use, and the policy reasons that ruled providers out."""
    ok: set[int] = set()
    reasons: list[str] = []
    verdicts: dict[int, policy.Decision] = {}
    for o in offers.values():
        if o.gpu_type not in r.gpu_types or (r.id, o.id) in declined:
            continue
        verdict = verdicts.get(o.provider_id) or providers.residency(doc, r.data_classification, o.provider)
        verdicts[o.provider_id] = verdict
        if verdict.allowed:
            ok.add(o.id)
        else:
            reasons.extend(f"{o.provider.name}: {why}" for why in verdict.reasons)
    return frozenset(ok), list(dict.fromkeys(reasons))


def _placement(a: Allocation) -> alloc.Placement:
    return alloc.Placement(request=a.request_id, offer=a.offer_id, start=a.start_period, periods=tuple(a.periods),
                           gpus=a.gpus, category=a.request.category,
                           gpu_hours=a.gpu_hours, cost=a.cost, subsidy=a.subsidy)


def plan(session: Session, programme: Programme, rnd: AllocationRound | None, decided: list[ComputeRequest], *,
         home: str, floors: bool = True, excluded_offers: Iterable[int] = (),
         stability: float = 0.0, dropped: AbstractSet[int] = frozenset(), caps: bool = True) -> Plan:
    """Solve for ``decided`` with every other live allocation of the programme held fixed."""
    doc = policy.current(session, home)
    excluded = set(excluded_offers)
    offers, rows = _offers(session, programme, home, excluded)
    ids = {r.id for r in decided}
    live = [a for a in live_allocations(session, programme) if a.id not in dropped]
    fixed = tuple(_placement(a) for a in live if a.request_id not in ids and a.offer_id in offers)
    previous = {a.request_id: a.offer_id for a in live if a.request_id in ids}
    declined = declined_pairs(session, decided)
    requests, reasons = [], {}
    for r in decided:
        eligible, why = _eligibility(doc, r, rows, declined)
        reasons[r.id] = why
        requests.append(alloc.Request(id=r.id, category=r.category, merit=programmes.merit(r) or 1.0,
                                      gpu_hours=r.gpu_hours, gpus=r.gpus_per_job, earliest=r.earliest_period,
                                      latest=r.latest_period, eligible=eligible,
                                      subsidy_rate=programmes.rate_for(programme, r.category)))
    problem = alloc.Round(
        requests=tuple(requests), offers=tuple(offers.values()), period_hours=programme.period_days * 24.0,
        budget=programme.budget - spent_outside(session, programme),
        category_floor=dict(programme.category_floor) if floors else {},
        category_ceiling=dict(programme.category_ceiling), fixed=fixed,
        caps=alloc.Caps(**programme.caps) if caps else alloc.Caps(),
        previous=previous, stability_bonus=stability, cost_weight=1e-6, gap_limit=programme.gap_limit,
        time_limit=programme.time_limit, workers=2)
    # Imported here: the solvers (OR-Tools with pandas and pyarrow, HiGHS, numpy) take ~150 MiB that a
    # server process serving only API and gateway calls should not carry.
    from sovstack.compute.allocator import solve

    return Plan(programme, rnd, decided, solve(problem), rows, reasons)


def spent_outside(session: Session, programme: Programme) -> float:
    """Subsidy already paid for allocations no longer live (reclaimed ones keep what they used)."""
    query = (select(Allocation).join(Allocation.request)
             .where(ComputeRequest.programme_id == programme.id, Allocation.status == "reclaimed"))
    return sum(a.used_gpu_hours * a.price * programmes.rate_for(programme, a.request.category)
               for a in session.scalars(query))


def explanation(plan_: Plan, request_id: int) -> dict[str, object]:
    found = plan_.result.explanations.get(request_id)
    out: dict[str, object] = {"allocated": False, "binding": [], "text": "not considered"}
    if found is not None:
        out = {"allocated": found.allocated, "binding": list(found.binding), "text": found.text}
    if "eligibility" in out["binding"] and plan_.policy_reasons.get(request_id):  # type: ignore[operator]
        out["policy"] = plan_.policy_reasons[request_id][:10]
    return out


def apply(session: Session, plan_: Plan, actor: str, action: str) -> dict[int, str]:
    """Save a feasible plan: new placements proposed, superseded ones marked, every request explained.

    Returns what happened to each decided request: kept, moved, placed, dropped or unallocated.
    """
    if not plan_.feasible:
        raise Conflict("the round is infeasible: " + "; ".join(plan_.result.conflicts), field="round",
                       reasons=list(plan_.result.conflicts))
    placed = {p.request: p for p in plan_.result.placements}
    current = {a.request_id: a for a in live_allocations(session, plan_.programme)
               if a.request_id in {r.id for r in plan_.decided} and a.status == "proposed"}
    outcome: dict[int, str] = {}
    for r in plan_.decided:
        outcome[r.id] = _settle(session, plan_, r, placed.get(r.id), current.get(r.id))
        r.explanation = explanation(plan_, r.id)
    audit.record(session, actor=actor, action=action,
                 target=f"round:{plan_.rnd.id}" if plan_.rnd else f"programme:{plan_.programme.id}",
                 detail={"status": plan_.result.status, "objective": plan_.result.objective,
                         "gap": plan_.result.gap, "placed": len(placed), "requests": len(plan_.decided)})
    return outcome


def _settle(session: Session, plan_: Plan, r: ComputeRequest, p: alloc.Placement | None,
            old: Allocation | None) -> str:
    if p is not None and old is not None and (old.offer_id, old.start_period) == (p.offer, p.start):
        r.status = "allocated"
        return "kept"
    if old is not None:
        old.status, old.reason = "superseded", "re-solved"
    if p is None:
        r.status = "unallocated"
        return "dropped" if old is not None else "unallocated"
    offer = plan_.offers[p.offer]
    session.add(Allocation(request_id=r.id, offer_id=p.offer, round_id=plan_.rnd.id if plan_.rnd else None,
                           start_period=p.start, periods=list(p.periods), gpus=r.gpus_per_job, gpu_hours=p.gpu_hours,
                           price=offer.price, cost=round(p.cost, 4), subsidy=round(p.subsidy, 4)))
    r.status = "allocated"
    return "moved" if old is not None else "placed"


def result_summary(plan_: Plan, outcome: dict[int, str]) -> dict[str, object]:
    res = plan_.result
    counts: dict[str, int] = defaultdict(int)
    for what in outcome.values():
        counts[what] += 1
    return {"status": res.status, "solver": res.solver, "objective": round(res.objective, 3),
            "bound": round(res.bound, 3), "gap": round(res.gap, 6), "greedy_objective": round(res.greedy_objective, 3),
            "seconds": round(res.seconds, 3), "conflicts": list(res.conflicts), "log": list(res.log)[-30:],
            "outcome": dict(counts), "requests": len(plan_.decided), "placements": len(res.placements)}


# The operations that re-solve ------------------------------------------------------------------

def candidates(session: Session, rnd: AllocationRound,
               dropped: AbstractSet[int] = frozenset()) -> tuple[list[ComputeRequest], list[ComputeRequest]]:
    """A round's requests the allocator decides (reviewed, not yet accepted) and those left unreviewed."""
    accepted = {a.request_id for a in live_allocations(session, rnd.programme)
                if a.status == "accepted" and a.id not in dropped}
    decided: list[ComputeRequest] = []
    unreviewed: list[ComputeRequest] = []
    for r in programmes.round_requests(session, rnd):
        if r.status == "withdrawn" or r.id in accepted:
            continue
        (decided if r.reviews else unreviewed).append(r)
    return decided, unreviewed


def allocate_round(session: Session, who: Principal, programme_ref: str, home: str) -> AllocationRound:
    """Solve the programme's open round (or re-solve its newest, keeping placements stable) and publish it."""
    programme = programmes.get_programme(session, programme_ref)
    who.require_admin("compute.rounds.allocate", f"programme:{programme.id}")
    programmes.lock(session, programme)
    rnd = programmes.current_round(session, programme) or programmes.get_round(session, programme.name)
    decided, unreviewed = candidates(session, rnd)
    solved = plan(session, programme, rnd, decided, home=home,
                  stability=STABILITY_BONUS if rnd.status == "allocated" else 0.0)
    summary = result_summary(solved, {})
    if not solved.feasible:
        rnd.result = summary  # the report is kept; no allocation is saved
        audit.record(session, actor=who.actor, action="compute.rounds.allocate", target=f"round:{rnd.id}",
                     outcome="failed", reasons=list(solved.result.conflicts))
        return rnd
    outcome = apply(session, solved, who.actor, "compute.rounds.allocate")
    for r in unreviewed:
        r.status = "unallocated"
        r.explanation = {"allocated": False, "binding": ["review"],
                         "text": f"not reviewed by the deadline {rnd.review_deadline}"}
    rnd.status, rnd.solved_at, rnd.result = "allocated", utcnow(), result_summary(solved, outcome)
    return rnd


def submit(session: Session, who: Principal, data: RequestCreate, home: str) -> ComputeRequest:
    """Submit a request; one within the fast-track size is approved by rule and placed at once."""
    request = programmes.submit_request(session, who, data)
    if request.fast_track:
        programmes.lock(session, request.programme)
        place_fast_track(session, request, home, who.actor)
    return request


def place_fast_track(session: Session, request: ComputeRequest, home: str, actor: str) -> None:
    """Approve by rule and place at once, around everything already allocated.

    A share cap cannot judge one small placement (on its own it is 100% of itself), so fast-track
    requests are placed without the caps; they count in the shares every later round is held to.
    """
    solved = plan(session, request.programme, None, [request], home=home, floors=False, caps=False)
    if solved.feasible:
        apply(session, solved, actor, "compute.requests.fast_track")
    else:
        request.status = "unallocated"
        request.explanation = {"allocated": False, "binding": ["infeasible"],
                               "text": "; ".join(solved.result.conflicts)}
    request.explanation = {**request.explanation, "fast_track": "approved by rule: at most "
                           f"{request.programme.fast_track_gpu_hours:g} GPU-hours"}


def plan_for(session: Session, requests: list[ComputeRequest], home: str, *, excluded_offers: Iterable[int] = (),
             dropped: Iterable[int] = (), emergency: bool = False) -> list[Plan]:
    """Plans re-placing requests after a decline or a cut-off, round by round, keeping others where they are.

    ``dropped`` allocations count as gone (a cut-off displaces them) though the database still holds them live.
    When the round with every rule is infeasible, only ``requests`` are re-placed, without category floors;
    in an ``emergency`` (a cut-off) also without the caps, which may no longer be able to hold at all.
    """
    gone = set(dropped)
    by_round: dict[int | None, list[ComputeRequest]] = defaultdict(list)
    for r in requests:
        by_round[r.round_id].append(r)
    plans = []
    for round_id, group in by_round.items():
        rnd = session.get(AllocationRound, round_id) if round_id else None
        decided = candidates(session, rnd, gone)[0] if rnd else group
        solved = plan(session, group[0].programme, rnd, decided, home=home, floors=rnd is not None,
                      caps=rnd is not None,
                      excluded_offers=excluded_offers, stability=STABILITY_BONUS, dropped=gone)
        if not solved.feasible:  # e.g. a floor no longer reachable, or only foreign capacity left
            first = solved.result.conflicts
            keep_caps = rnd is not None and not emergency
            solved = plan(session, group[0].programme, rnd, group, home=home, floors=False, caps=keep_caps,
                          excluded_offers=excluded_offers, stability=STABILITY_BONUS, dropped=gone)
            solved.first_conflicts = first
            solved.suspended = ("category floors",) + (() if keep_caps else ("concentration caps",))
        plans.append(solved)
    return plans


def resolve_for(session: Session, requests: list[ComputeRequest], home: str, actor: str, action: str) -> dict[int, str]:
    """Re-place requests after a decline and save the result."""
    outcome: dict[int, str] = {}
    for solved in plan_for(session, requests, home):
        outcome.update(apply(session, solved, actor, action))
    return outcome
