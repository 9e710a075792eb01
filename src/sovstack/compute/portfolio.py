"""Two solvers at once on a small round: HiGHS on the LP's reduced-cost neighbourhood, CP-SAT in restarts.

Both are started from the best allocation known, both stop at the same target (the best bound
less the gap limit), and whichever reaches it first stops the other. On two cores this trades
the long tail of one randomised search for the shorter of two: HiGHS's sub-MIP heuristics and
CP-SAT's search fail on different rounds.

The neighbourhood keeps every column whose LP reduced cost is within ``NEIGHBOURHOOD_SHARE``
of the bound, those the LP uses and those of the incumbent. An allocation within 1% of the
bound cannot pay much in reduced cost (their sum is at most the bound minus its value), so
columns far from zero rarely matter; many columns tie at zero, which a plain top-k per request
would cut arbitrarily. Columns outside it are held at zero, so HiGHS's own bound is not a bound
for the round and is not used.
"""

from __future__ import annotations

import math
import sys
import threading
from typing import Any

import highspy
import numpy as np
from highspy import cb

from sovstack.compute.columns import Problem
from sovstack.compute.greedy import repair_caps
from sovstack.compute.ledger import Ledger
from sovstack.compute.relaxation import Floats, build_model, new_highs

NEIGHBOURHOOD_SHARE = 0.0003   # of the LP bound: the reduced cost a neighbourhood column may have
SWITCH_INTERVAL = 0.0001      # seconds; Python's default is 0.005


class _Switching:
    """Shorter GIL hand-overs while a HiGHS thread runs beside Python work.

    HiGHS releases the GIL but takes it back for each callback (tens per second). While the
    solving thread runs Python (the eviction search, building CP-SAT's model) each of those
    waits up to the interpreter's switch interval, which made HiGHS take twice as long
    (measured: 0.27 s alone, 0.47 s beside a busy thread; 0.28 s with a 0.1 ms interval).
    The interval is process-wide, so it is shortened while any race holds it and restored
    when the last one lets go.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._saved = sys.getswitchinterval()

    def acquire(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, SWITCH_INTERVAL))
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                sys.setswitchinterval(self._saved)


SWITCHING = _Switching()


class Race:
    """The solvers of one round share their best value and the best proven bound; once the value is
    within the gap limit of the bound, every solver still running is stopped.

    The bound starts at the LP relaxation's and falls when CP-SAT, on the whole model, proves a
    better one (its cuts close part of the integrality gap, which on some rounds exceeds the gap
    limit by itself, so no allocation could ever come within it of the LP bound alone).
    """

    def __init__(self, bound: float, gap_limit: float) -> None:
        self.finished = threading.Event()
        self.gap_limit = gap_limit
        self._lock = threading.Lock()
        self._bound = bound
        self._best = 0.0
        self._cp_sat: Any = None

    def target(self) -> float:
        """The value an allocation needs to be within the gap limit of the best bound so far."""
        with self._lock:
            return self._bound * (1 - self.gap_limit)

    def attach(self, solver: Any) -> None:
        """Register a CP-SAT solver so that finishing the race stops it."""
        with self._lock:
            self._cp_sat = solver
            if self.finished.is_set():
                solver.stop_search()

    def solution(self, value: float) -> None:
        """A solver found an allocation worth at least ``value``."""
        with self._lock:
            self._best = max(self._best, value)
            self._check()

    def bound(self, bound: float) -> None:
        """A solver proved that no allocation is worth more than ``bound``."""
        with self._lock:
            self._bound = min(self._bound, bound)
            self._check()

    def finish(self) -> None:
        """Stop every solver still running."""
        with self._lock:
            self._finish()

    def _check(self) -> None:
        if self._best >= self._bound * (1 - self.gap_limit):
            self._finish()

    def _finish(self) -> None:
        self.finished.set()
        if self._cp_sat is not None:
            self._cp_sat.stop_search()


def neighbourhood(problem: Problem, x: Floats, reduced: Floats, bound: float, incumbent: Ledger,
                  share: float = NEIGHBOURHOOD_SHARE) -> list[int]:
    """Columns with reduced cost within ``share`` of the bound, used by the LP, or in the incumbent."""
    keep = np.flatnonzero((reduced >= -share * bound) | (x > 1e-6))
    return sorted(set(keep.tolist()) | set(incumbent.chosen.values()))


def highs_mip(problem: Problem, columns: list[int], start: Ledger, time_limit: float, race: Race) -> Ledger | None:
    """HiGHS on ``columns`` from ``start`` until the race is won, it proves it cannot improve, or time is up.

    Its answer is rebuilt column by column in the exact ledger (HiGHS keeps rows to 1e-7), so
    only an allocation that holds every row exactly is returned.
    """
    model, _ = build_model(problem, integral=True)
    n = len(problem.columns)
    upper = np.zeros(n + 1)
    upper[columns] = 1.0
    upper[n] = model.col_upper_[n]
    model.col_upper_ = upper
    h = new_highs(time_limit)
    h.setOptionValue("mip_rel_gap", 1e-4)
    h.setOptionValue("objective_target", race.target())
    h.passModel(model)
    h.setSolution(_solution(problem, start))

    def events(kind: Any, message: str, out: Any, data_in: Any, user: Any) -> None:
        if kind == cb.HighsCallbackType.kCallbackMipImprovingSolution:
            race.solution(out.objective_function_value)
        elif data_in is not None and race.finished.is_set():
            data_in.user_interrupt = True

    h.setCallback(events, None)
    h.startCallback(cb.HighsCallbackType.kCallbackMipInterrupt)
    h.startCallback(cb.HighsCallbackType.kCallbackMipImprovingSolution)
    h.run()
    if h.getInfo().primal_solution_status != 2:   # kSolutionStatusFeasible
        return None
    x = np.array(h.getSolution().col_value)[:n]
    ledger = Ledger(problem)
    values = problem.columns.value
    for c in sorted(np.flatnonzero(x > 0.5).tolist(), key=lambda c: -values[c]):
        if ledger.fits(c, math.inf):
            ledger.add(c)
    repair_caps(ledger)
    if not ledger.feasible() or ledger.value <= start.value:
        return None
    race.solution(ledger.value)
    return ledger


def _solution(problem: Problem, ledger: Ledger) -> highspy.HighsSolution:
    """The ledger's allocation as a HiGHS start (the total column included)."""
    n = len(problem.columns)
    values = np.zeros(n + 1)
    for c in ledger.chosen.values():
        values[c] = 1.0
    values[n] = sum(problem.columns.gpu_hours[c] for c in ledger.chosen.values())
    solution = highspy.HighsSolution()
    solution.col_value = values.tolist()
    solution.value_valid = True
    return solution
