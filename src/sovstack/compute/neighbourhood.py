"""Improve an allocation with CP-SAT on the columns the LP says matter.

The full model (tens of thousands of binaries, dense cap rows) is slow for CP-SAT on two
cores; the LP relaxation tells which columns an optimum is likely to use. The neighbourhood
keeps every column the LP uses, the best few by reduced cost for each request, and the columns
of the incumbent (passed as a hint), so CP-SAT can only improve on it. CP-SAT needs integer
coefficients: GPU-hours and money are rounded to a fine grid, and the answer is re-checked
row by row in the exact ledger before it is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from ortools.sat.python import cp_model

from sovstack.compute.columns import CapKey, Problem
from sovstack.compute.greedy import repair_caps
from sovstack.compute.ledger import Ledger
from sovstack.compute.portfolio import Race
from sovstack.compute.relaxation import Floats

PER_REQUEST = 3        # columns per request kept by reduced cost, besides those the LP uses
MONEY_GRID = 100.0     # cents
HOURS_GRID = 10.0      # tenths of a GPU-hour
SHARE_GRID = 10_000    # caps in basis points
Rounding = Callable[[Any], Any]   # np.floor or np.ceil, on a number or an array


def neighbourhood(problem: Problem, x: Floats, reduced: Floats, incumbent: Ledger) -> list[int]:
    """Columns to search over: used by the LP, best by reduced cost per request, or in the incumbent."""
    keep = set(np.flatnonzero(x > 1e-6).tolist()) | set(incumbent.chosen.values())
    for columns in problem.by_request:
        if columns:
            best = sorted(columns, key=lambda c: -reduced[c])[:PER_REQUEST]
            keep.update(best)
    return sorted(keep)


class _Progress(cp_model.CpSolverSolutionCallback):
    """Reports CP-SAT's solutions to the race, which stops the search once one is good enough."""

    def __init__(self, race: Race, slack: float) -> None:
        super().__init__()
        self.race = race
        self.slack = slack

    def on_solution_callback(self) -> None:
        # coefficients are rounded to whole units: the exact value is at least this
        self.race.solution(self.objective_value - self.slack)


def improve(problem: Problem, columns: Sequence[int], incumbent: Ledger, time_limit: float,
            workers: int, race: Race, presolve: bool = True, seed: int = 0) -> tuple[Ledger | None, float, bool]:
    """The best allocation CP-SAT finds on ``columns`` if it beats the incumbent, CP-SAT's bound, and
    whether CP-SAT finished its proof (optimal or infeasible on these columns).

    When ``columns`` are all the columns, the rows are rounded towards the relaxed side and the
    objective's rounding is added back, so the returned bound is valid for the exact problem; a
    solution that breaks an exact row is then mended by removing columns before it is offered.
    On a neighbourhood the rows are rounded towards the safe side and the bound is ``inf``.
    Solutions (and, on the whole model, bounds) are reported to ``race`` as they come; the race
    stops the search once an allocation is within the gap limit. ``presolve`` off saves CP-SAT's
    presolve (0.6-0.8 s on a 3,000-column model) for short runs; ``seed`` varies its search.
    """
    relaxed = len(columns) == len(problem.columns)
    model = cp_model.CpModel()
    x = {c: model.new_bool_var(f"x{c}") for c in columns}
    _add_rows(problem, model, x, relaxed)
    cols = problem.columns
    model.maximize(cp_model.LinearExpr.weighted_sum(list(x.values()), [round(cols.value[c]) for c in x]))
    chosen = set(incumbent.chosen.values())
    for c, var in x.items():
        model.add_hint(var, c in chosen)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, time_limit)
    solver.parameters.num_workers = max(1, workers)
    solver.parameters.cp_model_presolve = presolve
    solver.parameters.random_seed = seed
    slack = 0.5 * len(problem.requests)
    if relaxed:
        solver.best_bound_callback = lambda bound: race.bound(bound + slack)
    race.attach(solver)
    if race.finished.is_set():
        return None, math.inf, False
    status = solver.solve(model, _Progress(race, slack))
    bound = solver.best_objective_bound + slack if relaxed else math.inf
    proved = status in (cp_model.OPTIMAL, cp_model.INFEASIBLE)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, bound if status == cp_model.INFEASIBLE else math.inf, proved
    ledger = Ledger(problem)
    for c in sorted((c for c, var in x.items() if solver.boolean_value(var)), key=lambda c: -cols.value[c]):
        if ledger.fits(c, math.inf):
            ledger.add(c)
    repair_caps(ledger)
    if not ledger.feasible() or ledger.value <= incumbent.value:
        return None, bound, proved
    return ledger, bound, proved


def _add_rows(problem: Problem, model: cp_model.CpModel, x: dict[int, cp_model.IntVar], relaxed: bool) -> None:
    """Request, capacity, budget, category and cap rows on integer grids.

    ``relaxed`` rounds every row so no exact solution is cut off (a valid bound); otherwise so
    every solution stays exactly feasible. Coefficients are computed as arrays and rows written
    as weighted sums: a whole small round's model is then built in a few hundredths of a second.
    """
    up, down = (np.floor, np.ceil) if relaxed else (np.ceil, np.floor)
    cols, r = problem.columns, problem.round
    terms = _Terms(problem, x)
    by_request: dict[int, list[cp_model.IntVar]] = {}
    by_slot: dict[tuple[int, int], list[int]] = {}
    for k, c in enumerate(terms.columns):
        by_request.setdefault(cols.request[c], []).append(terms.vars[k])
        for t in range(cols.start[c], cols.start[c] + cols.length[c]):
            by_slot.setdefault((cols.offer[c], t), []).append(k)
    for group in by_request.values():
        model.add_at_most_one(group)
    for (o, t), uses in by_slot.items():
        if int(terms.gpus[uses].sum()) > problem.free[o][t]:
            model.add(terms.sum(terms.gpus[uses], uses) <= max(0, problem.free[o][t]))
    if math.isfinite(r.budget):
        room = down((r.budget - problem.fixed_subsidy) * MONEY_GRID)
        model.add(terms.sum(up(terms.subsidy * MONEY_GRID)) <= int(room))
    _add_category_rows(problem, model, terms, up, down)
    _add_cap_rows(problem, model, terms, up, down)


class _Terms:
    """The neighbourhood's variables with their columns' data as arrays, to write rows as weighted sums."""

    def __init__(self, problem: Problem, x: dict[int, cp_model.IntVar]) -> None:
        cols = problem.columns
        self.columns = list(x)
        self.vars = list(x.values())
        index = np.array(self.columns, dtype=np.int64)
        self.gpus = np.array([problem.requests[cols.request[c]].gpus for c in self.columns], dtype=np.int64)
        self.subsidy = np.array(cols.subsidy, dtype=np.float64)[index]
        self.hours = np.array(cols.gpu_hours, dtype=np.float64)[index]
        self.offer = np.array(cols.offer, dtype=np.int64)[index]
        self.category = [problem.requests[cols.request[c]].category for c in self.columns]

    def sum(self, coefficients: npt.NDArray[Any], positions: Sequence[int] | None = None) -> cp_model.LinearExpr:
        """``sum(coefficients[k] * var[k])`` over ``positions`` (all variables if None), zero terms left out."""
        chosen = list(range(len(self.vars))) if positions is None else list(positions)
        values = [int(v) for v in coefficients]
        keep = [k for k, v in enumerate(values) if v]
        return cp_model.LinearExpr.weighted_sum([self.vars[chosen[k]] for k in keep], [values[k] for k in keep])


def _add_category_rows(problem: Problem, model: cp_model.CpModel, terms: _Terms, up: Rounding, down: Rounding) -> None:
    """Subsidy per category between floor and ceiling; ``up`` rounds a row's use, ``down`` its room."""
    r = problem.round
    for name in set(r.category_floor) | set(r.category_ceiling):
        mine = [k for k, category in enumerate(terms.category) if category == name]
        spent = problem.fixed_category.get(name, 0.0)
        if name in r.category_ceiling:
            room = down((r.category_ceiling[name] - spent) * MONEY_GRID)
            model.add(terms.sum(up(terms.subsidy[mine] * MONEY_GRID), mine) <= int(room))
        if name in r.category_floor:
            need = up((r.category_floor[name] - spent) * MONEY_GRID)
            model.add(terms.sum(down(terms.subsidy[mine] * MONEY_GRID), mine) >= int(need))


def _add_cap_rows(problem: Problem, model: cp_model.CpModel, terms: _Terms, up: Rounding, down: Rounding) -> None:
    """load_key <= cap * total, written on the assignment variables, GPU-hours on a 0.1 h grid."""
    keys: set[CapKey] = {k for o in set(terms.offer.tolist()) for k in problem.offer_caps[o]} | set(problem.fixed_load)
    hours = terms.hours * HOURS_GRID
    used, counted = up(hours).astype(np.int64), down(hours).astype(np.int64)
    for key in keys:
        share = round(problem.limits[key[0]] * SHARE_GRID)
        on = np.array([key in caps for caps in problem.offer_caps], dtype=bool)[terms.offer]
        coefficients = np.where(on, used * SHARE_GRID, 0) - counted * share
        fixed = (share * problem.fixed_total - SHARE_GRID * problem.fixed_load.get(key, 0.0)) * HOURS_GRID
        model.add(terms.sum(coefficients) <= int(down(fixed)))
