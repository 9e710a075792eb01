"""Conflicts a round has before any solving: floors that cannot be met, caps that cannot all hold."""

from __future__ import annotations

import math
from itertools import combinations

import highspy
import numpy as np

from sovstack.compute.columns import CapKey, Problem
from sovstack.compute.relaxation import new_highs

CAP_NAMES = {"provider": "provider cap", "group": "corporate-group cap", "foreign": "foreign-control cap",
             "chip_vendor": "chip-vendor cap"}


def conflicts(problem: Problem) -> tuple[str, ...]:
    """Readable descriptions of every conflict found; empty if none."""
    return (*_fixed_conflicts(problem), *_category_conflicts(problem), *_cap_conflicts(problem))


def _fixed_conflicts(problem: Problem) -> list[str]:
    found = []
    budget = problem.round.budget
    if problem.fixed_subsidy > budget * (1 + 1e-9):
        found.append(f"budget: fixed placements already spend {problem.fixed_subsidy:,.2f}, "
                     f"more than the budget of {budget:,.2f}")
    for o, row in enumerate(problem.free):
        short = [t for t, free in enumerate(row) if free < 0]
        if short:
            found.append(f"capacity: fixed placements use more GPUs than offer {problem.offers[o].id} "
                         f"has in period(s) {', '.join(map(str, short))}")
    return found


def _category_conflicts(problem: Problem) -> list[str]:
    r = problem.round
    found = []
    floors = {k: v for k, v in r.category_floor.items() if v > 0}
    if sum(floors.values()) > r.budget * (1 + 1e-9):
        found.append(f"category floors: together {sum(floors.values()):,.2f}, above the budget of {r.budget:,.2f}")
    reach = _reachable_spend(problem)
    for name, floor in sorted(floors.items()):
        ceiling = r.category_ceiling.get(name, math.inf)
        if floor > ceiling:
            found.append(f"category {name}: floor {floor:,.2f} is above its ceiling {ceiling:,.2f}")
        if floor > r.budget * (1 + 1e-9):
            found.append(f"category {name}: floor {floor:,.2f} is above the budget of {r.budget:,.2f}")
        possible = problem.fixed_category.get(name, 0.0) + reach.get(name, 0.0)
        if floor > possible * (1 + 1e-9):
            found.append(f"category {name}: floor {floor:,.2f} is above the {possible:,.2f} of subsidy its "
                         "eligible demand could ever use")
    return found


def _reachable_spend(problem: Problem) -> dict[str, float]:
    """Per category, the subsidy if every request took its most subsidised column."""
    cols = problem.columns
    out: dict[str, float] = {}
    for i, columns in enumerate(problem.by_request):
        if columns:
            category = problem.requests[i].category
            out[category] = out.get(category, 0.0) + max(cols.subsidy[c] for c in columns)
    return out


def _cells(problem: Problem) -> list[tuple[CapKey, ...]]:
    """Distinct cap-key combinations of offers that some request can use."""
    used = set(problem.columns.offer)
    return sorted({problem.offer_caps[o] for o in used})


def shares_possible(problem: Problem, kinds: tuple[str, ...]) -> bool:
    """Whether GPU-hours can be spread over usable offers so the caps of ``kinds`` all hold.

    Without fixed placements the new GPU-hours are normalised to 1 (a non-empty allocation);
    with them, the fixed load counts and new GPU-hours may be any size.
    """
    cells = _cells(problem)
    if not cells and problem.fixed_total == 0:
        return True
    h = new_highs(5.0)
    h.addVars(len(cells), np.zeros(len(cells)), np.full(len(cells), highspy.kHighsInf))
    keys = sorted({k for cell in cells for k in cell if k[0] in kinds} | {
        k for k in problem.fixed_load if k[0] in kinds})
    everything = np.arange(len(cells), dtype=np.int32)
    for key in keys:
        cap = problem.limits[key[0]]
        coefficients = np.array([(1.0 if key in cell else 0.0) - cap for cell in cells])
        upper = cap * problem.fixed_total - problem.fixed_load.get(key, 0.0)
        h.addRow(-highspy.kHighsInf, upper, len(cells), everything, coefficients)
    if problem.fixed_total == 0:
        h.addRow(1.0, 1.0, len(cells), everything, np.ones(len(cells)))
    h.run()
    return bool(h.getModelStatus() == highspy.HighsModelStatus.kOptimal)


def _cap_conflicts(problem: Problem) -> list[str]:
    kinds = tuple(problem.limits)
    if not kinds or shares_possible(problem, kinds):
        return []
    for size in range(1, len(kinds) + 1):
        guilty = [group for group in combinations(kinds, size) if not shares_possible(problem, group)]
        if guilty:
            return [_describe_caps(problem, group) for group in guilty]
    return []


def _describe_caps(problem: Problem, kinds: tuple[str, ...]) -> str:
    parts = []
    for kind in kinds:
        holders = sorted({key[1] for cell in _cells(problem) for key in cell if key[0] == kind})
        cap = problem.limits[kind]
        if kind == "foreign":
            domestic = sum(1 for cell in _cells(problem) if ("foreign", "foreign") not in cell)
            parts.append(f"{CAP_NAMES[kind]} {cap:.0%} with {domestic} usable domestic offer type(s)")
        else:
            parts.append(f"{CAP_NAMES[kind]} {cap:.0%} × {len(holders)} usable {kind.replace('_', ' ')}(s) "
                         f"= {cap * len(holders):.0%}")
    joined = " and ".join(parts)
    return (f"caps: {joined}: no non-empty allocation can keep every share under its cap "
            "(cap:" + ", cap:".join(kinds) + ")")
