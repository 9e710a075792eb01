"""The allocation model as a HiGHS LP/MIP, and its LP relaxation (the bound every gap is proven against).

Rows: one per request (at most one column), one per offer-period (GPUs), the budget, one per
category with a floor or ceiling, and one per cap key. A single continuous column ``T`` carries
the total new GPU-hours (row ``sum gh x - T = 0``) so that a cap row reads
``sum_{key} gh x - cap * T <= cap * F - F_key`` (F: fixed GPU-hours). Substituting ``T`` gives
exactly the rows written on the assignment variables, with one dense row instead of one per cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np
import numpy.typing as npt

from sovstack.compute.columns import CapKey, Problem

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RowMap:
    """Where each kind of row sits in the LP, to read duals and name conflicts."""

    requests: int
    capacity: int                 # first capacity row; offer o, period t at capacity + o * periods + t
    budget: int | None
    categories: dict[str, int]
    total: int | None
    caps: dict[CapKey, int]
    count: int


@dataclass(frozen=True)
class LpSolution:
    """An optimal LP relaxation: its value (a valid upper bound), primal x and reduced costs."""

    status: str                   # "optimal" | "infeasible" | "time_limit"
    objective: float
    x: Floats
    reduced: Floats
    seconds: float


def _rows(problem: Problem) -> RowMap:
    r = problem.round
    n = len(problem.requests)
    capacity = n
    next_row = capacity + len(problem.offers) * problem.periods
    budget = None
    if math.isfinite(r.budget):
        budget, next_row = next_row, next_row + 1
    categories = {}
    for category in sorted(set(r.category_floor) | set(r.category_ceiling)):
        categories[category], next_row = next_row, next_row + 1
    total = None
    caps = {}
    if problem.limits:
        total, next_row = next_row, next_row + 1
        keys = sorted({k for keys in problem.offer_caps for k in keys} | set(problem.fixed_load))
        for key in keys:
            caps[key], next_row = next_row, next_row + 1
    return RowMap(n, capacity, budget, categories, total, caps, next_row)


def _entries(problem: Problem, rows: RowMap) -> tuple[Ints, Ints, Floats]:
    """The matrix as (row, column, value) triplets; column len(columns) is ``T``."""
    cols = problem.columns
    req, off = np.array(cols.request, dtype=np.int64), np.array(cols.offer, dtype=np.int64)
    start, length = np.array(cols.start, dtype=np.int64), np.array(cols.length, dtype=np.int64)
    gh, sub = np.array(cols.gpu_hours), np.array(cols.subsidy)
    gpus = np.array([problem.requests[i].gpus for i in cols.request], dtype=np.float64)
    index = np.arange(len(cols), dtype=np.int64)
    parts: list[tuple[Ints, Ints, Floats]] = [(req, index, np.ones(len(cols)))]
    for k in range(int(length.max(initial=0))):
        on = length > k
        parts.append((rows.capacity + off[on] * problem.periods + start[on] + k, index[on], gpus[on]))
    if rows.budget is not None:
        parts.append((np.full(len(cols), rows.budget), index, sub))
    category = np.array([problem.requests[i].category for i in cols.request], dtype=object)
    for name, row in rows.categories.items():
        on = category == name
        parts.append((np.full(int(on.sum()), row), index[on], sub[on]))
    if rows.total is not None:
        parts.append((np.full(len(cols), rows.total), index, gh))
        parts.append((np.array([rows.total]), np.array([len(cols)]), np.array([-1.0])))
        parts.extend(_cap_entries(problem, rows, off, index, gh))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def _cap_entries(problem: Problem, rows: RowMap, off: Ints, index: Ints,
                 gh: Floats) -> list[tuple[Ints, Ints, Floats]]:
    parts = []
    n = len(problem.columns)
    for key, row in rows.caps.items():
        offers_on = np.array([key in keys for keys in problem.offer_caps], dtype=bool)
        on = offers_on[off] if len(off) else np.zeros(0, dtype=bool)
        parts.append((np.full(int(on.sum()), row), index[on], gh[on]))
        parts.append((np.array([row]), np.array([n]), np.array([-problem.limits[key[0]]])))
    return parts


def _bounds(problem: Problem, rows: RowMap) -> tuple[Floats, Floats]:
    r = problem.round
    lower, upper = np.full(rows.count, -math.inf), np.ones(rows.count)
    free = np.array(problem.free, dtype=np.float64).reshape(-1)
    upper[rows.capacity:rows.capacity + free.size] = free
    if rows.budget is not None:
        upper[rows.budget] = r.budget - problem.fixed_subsidy
    for name, row in rows.categories.items():
        spent = problem.fixed_category.get(name, 0.0)
        lower[row] = r.category_floor.get(name, -math.inf) - spent
        upper[row] = r.category_ceiling.get(name, math.inf) - spent
    if rows.total is not None:
        lower[rows.total] = upper[rows.total] = 0.0
    for key, row in rows.caps.items():
        upper[row] = problem.limits[key[0]] * problem.fixed_total - problem.fixed_load.get(key, 0.0)
    return lower, upper


def build_model(problem: Problem, integral: bool) -> tuple[highspy.HighsLp, RowMap]:
    """The allocation as a HiGHS model: binaries if ``integral``, else its LP relaxation."""
    rows = _rows(problem)
    row_index, col_index, values = _entries(problem, rows)
    n = len(problem.columns) + 1
    order = np.argsort(col_index, kind="stable")
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, rows.count
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.append(np.array(problem.columns.value), 0.0)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.append(np.ones(n - 1), math.inf if rows.total is not None else 0.0)
    lp.row_lower_, lp.row_upper_ = _bounds(problem, rows)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, rows.count
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(np.bincount(col_index, minlength=n))]).astype(np.int32)
    lp.a_matrix_.index_ = row_index[order].astype(np.int32)
    lp.a_matrix_.value_ = values[order]
    if integral:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * (n - 1) + [highspy.HighsVarType.kContinuous]
    return lp, rows


def new_highs(time_limit: float) -> Any:
    """A quiet HiGHS instance with a time limit.

    The thread count is left alone: HiGHS fixes its thread pool process-wide on first use, and
    a later instance asking for a different count fails to run at all.
    """
    # The binding's own class: the Python wrapper's constructor prints HiGHS's banner to stdout before
    # output_flag can be turned off, and library code must not write to the CLI's output.
    h = highspy._Highs()  # type: ignore[attr-defined]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", max(0.05, time_limit))
    return h


def solve_relaxation(problem: Problem, time_limit: float) -> tuple[LpSolution, RowMap]:
    """The LP relaxation solved to optimality (its objective is then a valid bound) or as far as time allows."""
    lp, rows = build_model(problem, integral=False)
    h = new_highs(time_limit)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    seconds = h.getRunTime()
    n = len(problem.columns)
    if status == highspy.HighsModelStatus.kOptimal:
        solution = h.getSolution()
        x = np.array(solution.col_value)[:n]
        reduced = np.array(solution.col_dual)[:n]
        objective = float(h.getInfo().objective_function_value)
        return LpSolution("optimal", objective, x, reduced, seconds), rows
    empty = np.zeros(n)
    if status == highspy.HighsModelStatus.kInfeasible:
        return LpSolution("infeasible", -math.inf, empty, empty, seconds), rows
    return LpSolution("time_limit", math.inf, empty, empty, seconds), rows
