"""The optimising allocator of the compute exchange: who gets which GPUs, and the proof of how good that is.

Model. A request needs ``gpus`` GPUs for ``duration = gpu_hours / gpus`` hours, i.e.
``d = ceil(duration / period_hours)`` consecutive periods starting at ``t`` with
``earliest <= t`` and ``t + d - 1 <= latest``, on one offer available in all of them (gang
placement). It occupies ``gpus`` of that offer's GPUs in each of those periods; capacity per
offer-period is ``offer.gpus`` minus what ``fixed`` placements use. A variable
``x[i,o,t] in {0,1}`` exists only for eligible (offer, start) pairs that fit the window.

Value of placing request i on offer o: ``merit_i * gpu_hours_i``, times ``1 + stability_bonus``
if o is the offer it held before, minus ``cost_weight * cost``. Cost = gpu_hours * price;
subsidy = cost * subsidy_rate. ``Result.objective`` is this value summed over the new
placements (fixed placements are a constant and are left out of it, of the bound and of
``Result.placements``).

Constraints: each request at most once; GPUs per offer-period; total subsidy (fixed included)
<= budget; per-category subsidy between floor and ceiling (fixed included); and share caps:
GPU-hours on each provider <= cap * all allocated GPU-hours (fixed included), likewise per
corporate group, for foreign-controlled offers together, and per chip vendor. A round whose caps
admit no non-empty allocation is infeasible.

Method (``solve``): (1) ``check_feasibility``; (2) greedy in two orders (merit; value per unit
of capacity and budget) for a first allocation and ``greedy_objective``; (3) the LP relaxation
with HiGHS — its optimum is the proven bound; (4) LP-guided rounding: columns in order of LP
value then reduced cost, caps repaired, then filled; (5) local search that places left-out
requests by evicting lower-value ones, until the gap is within ``gap_limit`` or time is up;
(6) CP-SAT from the best allocation: on a small round as short restarts over the LP's reduced-cost
neighbourhoods and the whole model (whose proven bound then tightens the LP's), else on the LP's
neighbourhood; on the whole model in one run when no feasible allocation is known yet (floors).
On a small round HiGHS races (5) and (6) on the other core, on the LP's reduced-cost
neighbourhood (``portfolio``); the solvers share their best value and bound, and the first to
bring the gap within ``gap_limit`` stops the others.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time

import numpy as np

from sovstack.compute import neighbourhood, portfolio, search
from sovstack.compute.columns import Problem, prepare
from sovstack.compute.explain import explain
from sovstack.compute.feasibility import conflicts
from sovstack.compute.greedy import best_greedy, build
from sovstack.compute.ledger import Ledger
from sovstack.compute.model import Caps, Explanation, Offer, Placement, Request, Result, Round
from sovstack.compute.portfolio import Race
from sovstack.compute.relaxation import LpSolution, solve_relaxation

log = logging.getLogger(__name__)

WHOLE_MODEL_COLUMNS = 20_000   # above this CP-SAT only searches the LP's neighbourhood
# CP-SAT restarts on a small round: neighbourhood shares of the bound (inf: the whole model), seconds per run
RESTARTS = (0.0003, 0.001, 0.0003, 0.001, math.inf)
RESTART_SECONDS = 0.15
WHOLE_MODEL_RESTART = 3   # a whole-model run gets this many times as long: its bound needs the time

__all__ = ["Caps", "Explanation", "Offer", "Placement", "Request", "Result", "Round", "check_feasibility",
           "greedy", "solve"]


def check_feasibility(round: Round) -> tuple[str, ...]:
    """Conflicts visible before solving (caps that cannot hold together, unreachable floors); empty if none."""
    return conflicts(prepare(round))


def greedy(round: Round) -> tuple[Placement, ...]:
    """A fast feasible allocation (empty if the greedy cannot meet the category floors)."""
    return placements(best_greedy(prepare(round)))


def placements(ledger: Ledger) -> tuple[Placement, ...]:
    """The ledger's columns as placements, in request order."""
    problem, cols = ledger.problem, ledger.problem.columns
    out = []
    for i in sorted(ledger.chosen):
        c = ledger.chosen[i]
        out.append(Placement(
            request=problem.requests[i].id, offer=problem.offers[cols.offer[c]].id, start=cols.start[c],
            periods=tuple(range(cols.start[c], cols.start[c] + cols.length[c])),
            gpu_hours=cols.gpu_hours[c], cost=cols.cost[c], subsidy=cols.subsidy[c], gpus=problem.requests[i].gpus,
            category=problem.requests[i].category))
    return tuple(out)


class _Run:
    """One solve: the clock, the log and the best allocation so far."""

    def __init__(self, round: Round) -> None:
        self.started = time.perf_counter()
        self.deadline = self.started + round.time_limit
        self.lines: list[str] = []
        self.best: Ledger | None = None
        self.engine = "greedy"

    def left(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    def note(self, line: str) -> None:
        self.lines.append(f"{time.perf_counter() - self.started:6.2f}s {line}")

    def offer(self, ledger: Ledger | None, engine: str) -> None:
        """Keep ``ledger`` if it is feasible and better than the best so far."""
        if ledger is not None and ledger.feasible() and (self.best is None or ledger.value > self.best.value):
            self.best, self.engine = ledger, engine


def solve(round: Round) -> Result:
    """The best allocation found within ``round.time_limit``, with its proven gap to the LP bound."""
    run = _Run(round)
    problem = prepare(round)
    run.note(f"prepared {len(problem.requests)} requests, {len(problem.offers)} offers, {len(problem.columns)} columns")
    found = conflicts(problem)
    if found:
        run.note("conflicts before solving")
        return _infeasible(run, found)
    first = best_greedy(problem)
    greedy_value = first.value if first.feasible() else 0.0
    run.offer(first, "greedy")
    run.note(f"greedy {greedy_value:,.0f}")
    lp, _ = solve_relaxation(problem, run.left())
    run.note(f"LP {lp.status} {lp.objective:,.0f} in {lp.seconds:.2f}s")
    if lp.status == "infeasible":
        return _infeasible(run, ("the LP relaxation is infeasible: category floors, caps, budget and capacity "
                                 "cannot all hold together",))
    bound = lp.objective if lp.status == "optimal" else _trivial_bound(problem)
    if lp.status == "optimal":
        bound = _improve(problem, lp, bound, run)
    return _result(run, bound, greedy_value)


def _improve(problem: Problem, lp: LpSolution, bound: float, run: _Run) -> float:
    """LP-guided rounding, then eviction search and CP-SAT (raced by HiGHS on small rounds); returns the
    (maybe tighter) bound."""
    order = np.lexsort((-lp.reduced, -np.round(lp.x, 6))).tolist()
    run.offer(build(problem, order, math.inf), "lp-rounding")
    run.note(f"LP rounding -> {_value(run):,.0f}")
    search.rank_columns(problem, (lp.reduced + bound * lp.x).tolist())
    race = Race(bound, problem.round.gap_limit)
    if run.best is not None:
        race.solution(run.best.value)
    helper = _Helper(problem, lp, bound, run, race) if not race.finished.is_set() and run.best is not None and _whole(
        problem) else None
    try:
        if run.best is not None and not race.finished.is_set():
            run.offer(search.improve(run.best.copy(), _priority(problem, lp), run.deadline, race.target(),
                                     race.finished), "lp-rounding+search")
            run.note(f"eviction search -> {_value(run):,.0f}")
            race.solution(_value(run))
        if (run.best is None or not race.finished.is_set()) and run.left() > 0.1:
            bound = min(bound, _cp_sat(problem, lp, bound, run, race, helper is not None))
    finally:
        if helper is not None:
            race.finish()
            helper.join(run, race)
    return bound


def _whole(problem: Problem) -> bool:
    return len(problem.columns) <= WHOLE_MODEL_COLUMNS


class _Helper:
    """HiGHS on the LP's reduced-cost neighbourhood in a thread (HiGHS releases the GIL), racing the
    eviction search and CP-SAT on the other core."""

    def __init__(self, problem: Problem, lp: LpSolution, bound: float, run: _Run, race: Race) -> None:
        assert run.best is not None
        self.start = run.best
        self.columns = portfolio.neighbourhood(problem, lp.x, lp.reduced, bound, self.start)
        self.found: Ledger | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(problem, run.left(), race), name="sovstack-highs",
                                       daemon=True)
        portfolio.SWITCHING.acquire()
        try:
            self.thread.start()
        except BaseException:
            portfolio.SWITCHING.release()
            raise

    def _run(self, problem: Problem, time_limit: float, race: Race) -> None:
        try:
            self.found = portfolio.highs_mip(problem, self.columns, self.start, time_limit, race)
        except BaseException as error:  # re-raised in the solving thread by join(), or logged if not joined
            self.error = error
        finally:
            portfolio.SWITCHING.release()
            with _WINDING_LOCK:
                unjoined = self.thread in _WINDING_DOWN
                _WINDING_DOWN.discard(self.thread)
            if unjoined and self.error is not None:
                log.error("HiGHS failed after its race was won", exc_info=self.error)

    def join(self, run: _Run, race: Race) -> None:
        """Wait for HiGHS and keep its answer, unless the solving thread's allocation already wins the
        race: HiGHS notices a stop only between its sub-MIPs (up to 0.35 s later, measured), so it is
        then left to stop on its own and joined at interpreter exit at the latest."""
        if run.best is not None and run.best.value >= race.target():
            with _WINDING_LOCK:
                if self.thread.is_alive():
                    _WINDING_DOWN.add(self.thread)
                    run.note("HiGHS stops in the background: the race is won")
                    return
        self.thread.join()
        if self.error is not None:
            raise self.error
        run.offer(self.found, "highs")
        run.note(f"HiGHS on {len(self.columns)} columns -> "
                 f"{self.found.value if self.found is not None else 0.0:,.0f}; best {_value(run):,.0f}")


_WINDING_DOWN: set[threading.Thread] = set()   # HiGHS threads of won races, still stopping
_WINDING_LOCK = threading.Lock()


@atexit.register
def _join_winding_down() -> None:
    """A HiGHS thread still running when the interpreter finalises aborts the process; wait for them."""
    with _WINDING_LOCK:
        threads = list(_WINDING_DOWN)
    for thread in threads:
        thread.join()


def _cp_sat(problem: Problem, lp: LpSolution, bound: float, run: _Run, race: Race, shared: bool) -> float:
    """CP-SAT from the incumbent; returns the bound it proved (``inf`` if none).

    A small round with an incumbent gets short restarts (``_restarts``); one with none yet (category
    floors) gets the whole model in one run, to find any allocation at all; a large round gets the
    LP's neighbourhood. When ``shared`` it leaves one core to HiGHS.
    """
    workers = max(1, problem.round.workers - 1) if shared else problem.round.workers
    if run.best is not None and _whole(problem):
        return _restarts(problem, lp, bound, run, race, workers)
    start = run.best if run.best is not None else Ledger(problem)
    whole = _whole(problem)
    columns = list(range(len(problem.columns))) if whole else neighbourhood.neighbourhood(
        problem, lp.x, lp.reduced, start)
    found, cp_bound, _ = neighbourhood.improve(problem, columns, start, run.left(), workers, race)
    run.offer(found, "cp-sat")
    run.note(f"CP-SAT on {len(columns)} columns -> {_value(run):,.0f}, bound {cp_bound:,.0f}")
    return cp_bound


def _restarts(problem: Problem, lp: LpSolution, bound: float, run: _Run, race: Race, workers: int) -> float:
    """Short CP-SAT runs without presolve, each from the best allocation so far, cycling through
    ``RESTARTS``: two sizes of the LP's reduced-cost neighbourhood, then the whole model, whose
    proven bound counts (``math.inf`` share).

    Run times to a 1% gap are heavy-tailed: one long run stalls on some rounds for seconds, while
    restarts with another neighbourhood and random seed, each keeping what the last one found,
    get out of the stall. Some rounds need a long whole-model run instead (its cuts prove a bound
    below the LP's), so the whole-model run doubles in length each cycle, as in Luby-style restarts.
    Measured on 200 x 20 seeds 1-40: 34-36 within 1% in under 1 s (33 with one long run), median
    0.35-0.40 s (0.47 s), slowest 1.7-2.1 s (2.9 s).
    """
    everything = list(range(len(problem.columns)))
    proven, runs = math.inf, 0
    while not race.finished.is_set() and run.left() > 0.05:
        assert run.best is not None
        share = RESTARTS[runs % len(RESTARTS)]
        whole = math.isinf(share)
        columns = everything if whole else portfolio.neighbourhood(problem, lp.x, lp.reduced, bound, run.best, share)
        length = RESTART_SECONDS * (WHOLE_MODEL_RESTART * 2 ** min(runs // len(RESTARTS), 10) if whole else 1)
        found, cp_bound, proved = neighbourhood.improve(problem, columns, run.best, min(length, run.left()), workers,
                                                        race, presolve=False, seed=runs)
        runs += 1
        proven = min(proven, cp_bound)
        if found is not None and found.value > run.best.value:
            run.offer(found, "cp-sat")
            run.note(f"CP-SAT run {runs} on {len(columns)} columns -> {_value(run):,.0f}")
        if whole and proved:
            break   # the whole model is solved: nothing is left to find
    run.note(f"CP-SAT: {runs} runs, bound {proven:,.0f}")
    return proven


def _priority(problem: Problem, lp: LpSolution) -> list[int]:
    """Requests the LP uses most first, then by value."""
    used = [max((float(lp.x[c]) for c in cs), default=0.0) for cs in problem.by_request]
    return sorted(range(len(problem.requests)),
                  key=lambda i: (-used[i], -problem.requests[i].merit * problem.requests[i].gpu_hours))


def _value(run: _Run) -> float:
    return run.best.value if run.best is not None else 0.0


def _gap(bound: float, objective: float) -> float:
    return 0.0 if bound <= 0 else max(0.0, (bound - objective) / bound)


def _trivial_bound(problem: Problem) -> float:
    """Every request on its most valuable column: valid when the LP did not finish."""
    values = problem.columns.value
    return sum(max([0.0, *(values[c] for c in cs)]) for cs in problem.by_request)


def _result(run: _Run, bound: float, greedy_value: float) -> Result:
    problem_round = run.best.problem.round if run.best is not None else None
    if run.best is None or problem_round is None:
        run.note("no feasible allocation found within the time limit")
        return Result("time_limit", (), 0.0, bound, 1.0 if bound > 0 else 0.0, greedy_value,
                      time.perf_counter() - run.started, run.engine, {},
                      ("no feasible allocation found within the time limit (category floors?)",), tuple(run.lines))
    objective = run.best.value
    bound = max(bound, objective)
    gap = _gap(bound, objective)
    status = "optimal" if gap <= 1e-9 else "within_gap" if gap <= problem_round.gap_limit else "time_limit"
    explanations: dict[int, Explanation] = explain(run.best)
    run.note(f"{status}: objective {objective:,.0f}, bound {bound:,.0f}, gap {gap:.3%}")
    return Result(status, placements(run.best), objective, bound, gap, greedy_value,
                  time.perf_counter() - run.started, run.engine, explanations, (), tuple(run.lines))


def _infeasible(run: _Run, found: tuple[str, ...]) -> Result:
    return Result("infeasible", (), 0.0, 0.0, 0.0, 0.0, time.perf_counter() - run.started, "none", {}, found,
                  tuple(run.lines))
