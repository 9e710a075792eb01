"""Greedy allocation: place columns in a priority order, repair the share caps, fill what is left.

The same routine serves the plain greedy (orders by merit, and by value per unit of the scarce
resources) and the LP-guided rounding in ``solver`` (orders by the LP solution), so both produce
allocations that the ledger has checked row by row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sovstack.compute.columns import Problem
from sovstack.compute.ledger import Ledger

FILL_PASSES = 4


def build(problem: Problem, order: Sequence[int], projected: float = 0.0) -> Ledger:
    """An allocation made by taking ``order`` front to back, then repairing caps and filling.

    ``projected`` is the total GPU-hours the caller expects to reach; while building up from
    nothing, caps are checked against it so the first placements are not all refused.
    """
    ledger = Ledger(problem)
    meet_floors(ledger, order, projected)
    for c in order:
        if _open(ledger, c) and problem.columns.value[c] > 0 and ledger.fits(c, projected):
            ledger.add(c)
    repair_caps(ledger)
    fill(ledger, order)
    meet_floors(ledger, order, 0.0)
    return ledger


def _open(ledger: Ledger, c: int) -> bool:
    return ledger.problem.columns.request[c] not in ledger.chosen


def meet_floors(ledger: Ledger, order: Sequence[int], projected: float) -> None:
    """Place columns of categories below their subsidy floor first, in ``order``."""
    short = ledger.floor_shortfall()
    if not short:
        return
    cols, requests = ledger.problem.columns, ledger.problem.requests
    for c in order:
        category = requests[cols.request[c]].category
        if category in short and _open(ledger, c) and ledger.fits(c, projected):
            ledger.add(c)
            short = ledger.floor_shortfall()
            if not short:
                return


def fill(ledger: Ledger, order: Sequence[int]) -> None:
    """Add every column in ``order`` that still fits exactly, until a pass adds nothing."""
    values = ledger.problem.columns.value
    for _ in range(FILL_PASSES):
        added = False
        for c in order:
            if _open(ledger, c) and values[c] > 0 and ledger.fits(c):
                ledger.add(c)
                added = True
        if not added:
            return


def repair_caps(ledger: Ledger) -> None:
    """Remove the lowest-value GPU-hours from over-share cap rows until every cap holds.

    Removing from one row raises the others' shares, so this loops; it stops when a row has
    nothing left it may remove (floors protect their categories).
    """
    p, cols = ledger.problem, ledger.problem.columns
    for _ in range(4 * len(p.limits) * max(1, len(p.offers))):
        excess = ledger.cap_excess()
        if not excess:
            return
        key = max(excess, key=lambda k: excess[k] / max(1e-12, 1 - p.limits[k[0]]))
        on_key = [c for c in ledger.chosen.values() if key in p.offer_caps[cols.offer[c]]]
        on_key.sort(key=lambda c: cols.value[c] / cols.gpu_hours[c])
        removed = False
        for c in on_key:
            if ledger.cap_excess().get(key, 0.0) <= 0 and removed:
                break
            if _protected(ledger, c):
                continue
            ledger.remove(c)
            removed = True
        if not removed:
            return


def _protected(ledger: Ledger, c: int) -> bool:
    """Whether removing ``c`` would push its category below a floor it currently meets."""
    problem = ledger.problem
    category = problem.requests[problem.columns.request[c]].category
    floor = problem.round.category_floor.get(category)
    if floor is None:
        return False
    return ledger.category.get(category, 0.0) - problem.columns.subsidy[c] < floor


def merit_order(problem: Problem) -> list[int]:
    """Requests by value per GPU-hour, each request's columns cheapest offer first."""
    def merit(i: int) -> float:
        return problem.requests[i].merit
    return _flatten(problem, sorted(range(len(problem.requests)), key=merit, reverse=True))


def resource_order(problem: Problem) -> list[int]:
    """Requests by value per unit of scarce resources: GPU-hours against capacity, subsidy against budget."""
    cols = problem.columns
    capacity = sum(o.gpus * len(o.periods) for o in problem.offers) * problem.round.period_hours
    budget_left = problem.round.budget - problem.fixed_subsidy
    weight_budget = 1.0 / budget_left if math.isfinite(budget_left) and budget_left > 0 else 0.0

    def density(i: int) -> float:
        columns = problem.by_request[i]
        if not columns:
            return 0.0
        c = columns[0]
        use = cols.gpu_hours[c] / max(capacity, 1e-9) + cols.subsidy[c] * weight_budget
        return cols.value[c] / max(use, 1e-12)
    return _flatten(problem, sorted(range(len(problem.requests)), key=density, reverse=True))


def _flatten(problem: Problem, requests: Sequence[int]) -> list[int]:
    return [c for i in requests for c in problem.by_request[i]]


def best_greedy(problem: Problem) -> Ledger:
    """The better feasible allocation of the merit order and the scarce-resource order."""
    best: Ledger | None = None
    for order in (merit_order(problem), resource_order(problem)):
        # caps ignored on the way up (projected = inf), then repaired: a cap checked against a
        # total that does not exist yet would refuse the first placements
        ledger = build(problem, order, math.inf)
        if ledger.feasible() and (best is None or ledger.value > best.value):
            best = ledger
    return best if best is not None else Ledger(problem)
