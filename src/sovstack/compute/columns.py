"""Candidate placements (columns) of a round, and a ledger that keeps every constraint's room.

A column is one eligible (request, offer, start) triple whose periods all lie in the request's
window and in the offer's availability. The ledger adds and removes columns and says which
constraints an addition would break; greedy, LP rounding, repair and explanations share it so
they can never disagree about what "feasible" means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sovstack.compute.model import CAP_KINDS, Offer, Request, Round

CapKey = tuple[str, str]
TOLERANCE = 1e-9


@dataclass
class Columns:
    """Parallel lists, one entry per candidate column."""

    request: list[int] = field(default_factory=list)   # index into Problem.requests
    offer: list[int] = field(default_factory=list)     # index into Problem.offers
    start: list[int] = field(default_factory=list)
    length: list[int] = field(default_factory=list)
    gpu_hours: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    subsidy: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.request)


@dataclass
class Problem:
    """A round prepared for solving: columns, residual capacity and what fixed placements use."""

    round: Round
    offers: tuple[Offer, ...]
    requests: tuple[Request, ...]           # the requests still to decide (fixed ones removed)
    periods: int
    columns: Columns
    by_request: list[list[int]]             # columns of each request, cheapest offer first
    free: list[list[int]]                   # GPUs left per offer and period after fixed placements
    offer_caps: list[tuple[CapKey, ...]]    # the cap rows each offer's GPU-hours count towards
    limits: dict[str, float]                # cap kind -> maximum share, only for caps that are set
    fixed_load: dict[CapKey, float]
    fixed_total: float
    fixed_subsidy: float
    fixed_category: dict[str, float]
    category_of: dict[int, str]             # request id -> category, fixed requests included
    by_request_ranked: list[list[int]] = field(default_factory=list)  # columns in the order moves try them

    def duration_periods(self, request: Request) -> int:
        """Consecutive periods the request occupies once started."""
        hours = request.gpu_hours / request.gpus
        return max(1, math.ceil(hours / self.round.period_hours - TOLERANCE))


def cap_keys(offer: Offer, limits: dict[str, float]) -> tuple[CapKey, ...]:
    """The cap rows an offer's GPU-hours count towards (foreign only if foreign-controlled)."""
    keys: list[CapKey] = []
    for kind in CAP_KINDS:
        if kind not in limits:
            continue
        if kind == "foreign":
            if offer.foreign:
                keys.append(("foreign", "foreign"))
        else:
            keys.append((kind, str(getattr(offer, kind))))
    return tuple(keys)


def prepare(round: Round) -> Problem:
    """Build the columns and residual capacities of a round."""
    offers = tuple(round.offers)
    fixed_ids = {p.request for p in round.fixed}
    requests = tuple(r for r in round.requests if r.id not in fixed_ids)
    periods = 1 + max([0, *(t for o in offers for t in o.periods), *(r.latest for r in round.requests),
                       *(t for p in round.fixed for t in p.periods)])
    limits = {k: float(v) for k in CAP_KINDS if (v := getattr(round.caps, k)) is not None}
    problem = Problem(
        round=round, offers=offers, requests=requests, periods=periods, columns=Columns(),
        by_request=[[] for _ in requests], free=[[0] * periods for _ in offers],
        offer_caps=[cap_keys(o, limits) for o in offers], limits=limits, fixed_load={},
        fixed_total=0.0, fixed_subsidy=0.0, fixed_category={},
        category_of={r.id: r.category for r in round.requests})
    for index, offer in enumerate(offers):
        for t in offer.periods:
            problem.free[index][t] = offer.gpus
    _apply_fixed(problem)
    for index, request in enumerate(requests):
        _add_columns(problem, index, request)
    problem.by_request_ranked = problem.by_request
    return problem


def _apply_fixed(problem: Problem) -> None:
    """Take fixed placements' GPUs, subsidy and cap load out of the room left to decide."""
    position = {o.id: i for i, o in enumerate(problem.offers)}
    gpus_of = {r.id: r.gpus for r in problem.round.requests}
    for placement in problem.round.fixed:
        index = position.get(placement.offer)
        if index is None:
            continue
        offer = problem.offers[index]
        # A fixed placement whose request is not decided here says its own GPUs; failing that, the
        # whole offer is assumed taken (cautious: never more than the offer has).
        gpus = placement.gpus or gpus_of.get(placement.request, offer.gpus)
        for t in placement.periods:
            problem.free[index][t] -= gpus
        for key in problem.offer_caps[index]:
            problem.fixed_load[key] = problem.fixed_load.get(key, 0.0) + placement.gpu_hours
        problem.fixed_total += placement.gpu_hours
        problem.fixed_subsidy += placement.subsidy
        category = placement.category or problem.category_of.get(placement.request)
        if category is not None:
            problem.fixed_category[category] = problem.fixed_category.get(category, 0.0) + placement.subsidy


def _add_columns(problem: Problem, index: int, request: Request) -> None:
    """Append every eligible (offer, start) column of one request, cheapest offer first."""
    round = problem.round
    length = problem.duration_periods(request)
    columns = problem.columns
    chosen: list[int] = []
    for o, offer in enumerate(problem.offers):
        if offer.id not in request.eligible or offer.gpus < request.gpus:
            continue
        available = set(offer.periods)
        cost = request.gpu_hours * offer.price
        value = request.merit * request.gpu_hours
        if round.previous.get(request.id) == offer.id:
            value *= 1.0 + round.stability_bonus
        value -= round.cost_weight * cost
        for start in range(max(0, request.earliest), request.latest - length + 2):
            if all(t in available for t in range(start, start + length)):
                chosen.append(len(columns))
                columns.request.append(index)
                columns.offer.append(o)
                columns.start.append(start)
                columns.length.append(length)
                columns.gpu_hours.append(request.gpu_hours)
                columns.cost.append(cost)
                columns.subsidy.append(cost * request.subsidy_rate)
                columns.value.append(value)
    chosen.sort(key=lambda c: (problem.offers[columns.offer[c]].price, columns.start[c]))
    problem.by_request[index] = chosen
