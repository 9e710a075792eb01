"""The allocator keeps every hard constraint, proves its gap, and explains its decisions."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import threading
import time

import pytest

from sovstack.compute import allocator, portfolio
from sovstack.compute.allocator import (
    RESTARTS,
    Caps,
    Offer,
    Placement,
    Request,
    Result,
    Round,
    check_feasibility,
    greedy,
    placements,
    solve,
)
from sovstack.compute.columns import prepare
from sovstack.compute.greedy import build
from sovstack.compute.portfolio import Race
from sovstack.compute.relaxation import solve_relaxation
from sovstack.compute.synthetic import generate


def offer(id: int, provider: str = "A", gpus: int = 8, price: float = 2.0, periods: int = 2,
          foreign: bool = False, vendor: str = "NVIDIA") -> Offer:
    return Offer(id, provider, provider, foreign, vendor, "H100", gpus, price, tuple(range(periods)))


def request(id: int, offers: set[int], merit: float = 5.0, gpus: int = 8, hours: float = 8 * 168,
            earliest: int = 0, latest: int = 1, category: str = "startup", rate: float = 0.5) -> Request:
    return Request(id, category, merit, hours, gpus, earliest, latest, frozenset(offers), rate)


def check(round: Round, placements: tuple[Placement, ...]) -> None:
    """Every hard constraint of the model, recomputed from the placements."""
    requests = {r.id: r for r in round.requests}
    offers = {o.id: o for o in round.offers}
    every = (*round.fixed, *placements)
    used: dict[tuple[int, int], int] = {}
    for p in every:
        for t in p.periods:
            used[p.offer, t] = used.get((p.offer, t), 0) + requests[p.request].gpus
    assert all(used[o, t] <= offers[o].gpus for o, t in used)
    assert sum(p.subsidy for p in every) <= round.budget * (1 + 1e-9)
    assert len({p.request for p in every}) == len(every)
    total = sum(p.gpu_hours for p in every)
    for kind in ("provider", "group", "chip_vendor", "foreign"):
        cap = getattr(round.caps, kind)
        if cap is None:
            continue
        load: dict[object, float] = {}
        for p in every:
            o = offers[p.offer]
            if kind != "foreign" or o.foreign:
                load[getattr(o, kind)] = load.get(getattr(o, kind), 0.0) + p.gpu_hours
        assert all(v <= cap * total * (1 + 1e-9) + 1e-6 for v in load.values()), (kind, load, total)
    for p in placements:
        r, o = requests[p.request], offers[p.offer]
        assert p.offer in r.eligible and r.gpus <= o.gpus
        assert r.earliest <= p.periods[0] and p.periods[-1] <= r.latest
        assert set(p.periods) <= set(o.periods)


def test_tiny_exact_optimum() -> None:
    # one 8-GPU offer for two periods: two one-period jobs fit, or the one two-period job
    offers = (offer(1),)
    reqs = (request(1, {1}, merit=5, hours=8 * 168, latest=0), request(2, {1}, merit=4, hours=8 * 168, earliest=1),
            request(3, {1}, merit=4.4, hours=16 * 168))
    result = solve(Round(reqs, offers))
    assert {p.request for p in result.placements} == {1, 2}
    assert result.objective == pytest.approx((5 + 4) * 8 * 168)
    assert result.status == "optimal"
    check(Round(reqs, offers), result.placements)


def test_capacity_binds_and_is_explained() -> None:
    offers = (offer(1, gpus=8),)
    reqs = (request(1, {1}, merit=9, latest=0), request(2, {1}, merit=3, latest=0))
    result = solve(Round(reqs, offers))
    assert [p.request for p in result.placements] == [1]
    assert result.explanations[2].binding[0] == "capacity"
    assert "offer 1" in result.explanations[2].text


def test_budget_binds_and_is_explained() -> None:
    offers = (offer(1, gpus=16),)
    reqs = (request(1, {1}, merit=9), request(2, {1}, merit=3))
    cost = 8 * 168 * 2.0 * 0.5
    result = solve(Round(reqs, offers, budget=cost * 1.5))
    check(Round(reqs, offers, budget=cost * 1.5), result.placements)
    assert [p.request for p in result.placements] == [1]
    assert result.explanations[2].binding == ("budget",)


def test_provider_cap_holds_and_is_explained() -> None:
    offers = (offer(1, "A", gpus=32), offer(2, "B", gpus=8))
    reqs = tuple(request(i, {1, 2}, merit=10 - i, latest=0) for i in range(1, 6))
    round = Round(reqs, offers, caps=Caps(provider=0.5))
    result = solve(round)
    check(round, result.placements)
    assert len(result.placements) == 2
    left = [e for e in result.explanations.values() if not e.allocated]
    assert any("cap:provider" in e.binding for e in left)


def test_eligibility_gang_and_window_are_explained() -> None:
    offers = (offer(1, gpus=8, periods=2),)
    reqs = (request(1, set()), request(2, {1}, gpus=16), request(3, {1}, hours=8 * 168 * 3, latest=5))
    result = solve(Round(reqs, offers))
    assert not result.placements
    assert result.explanations[1].binding == ("eligibility",)
    assert result.explanations[2].binding == ("gang",)
    assert result.explanations[3].binding == ("window",)


def test_window_is_respected() -> None:
    offers = (offer(1, periods=4),)
    reqs = (request(1, {1}, earliest=2, latest=3),)
    result = solve(Round(reqs, offers))
    assert result.placements[0].periods == (2,)


def test_fixed_placements_use_capacity_and_are_not_repeated() -> None:
    offers = (offer(1, gpus=8),)
    reqs = (request(1, {1}, merit=1), request(2, {1}, merit=9))
    fixed = (Placement(1, 1, 0, (0, 1), 8 * 168.0, 8 * 168 * 2.0, 8 * 168.0),)
    round = Round(reqs, offers, fixed=fixed)
    result = solve(round)
    assert result.placements == ()
    check(round, result.placements)


def test_fixed_placements_of_other_requests_hold_only_their_own_gpus() -> None:
    offers = (offer(1, gpus=16),)
    fixed = (Placement(99, 1, 0, (0, 1), 8 * 2 * 168.0, 0.0, 0.0, gpus=8, category="academic"),)
    round = Round((request(1, {1}, gpus=8),), offers, fixed=fixed)
    result = solve(round)
    assert result.status != "infeasible" and [p.request for p in result.placements] == [1]
    crowded = Round((request(1, {1}, gpus=9),), offers, fixed=fixed)
    assert solve(crowded).placements == ()  # 8 of 16 GPUs are taken in both periods


def test_cp_sat_restarts_end_once_the_whole_model_is_proved() -> None:
    # Nothing fits, so no allocation can ever reach the gap target against a positive bound; the
    # restarts must stop when CP-SAT proves the whole model rather than cycle until the time limit.
    fixed = (Placement(99, 1, 0, (0, 1), 8 * 2 * 168.0, 0.0, 0.0, gpus=8, category="academic"),)
    crowded = Round((request(1, {1}, gpus=9), request(2, {1}, gpus=12)), (offer(1, gpus=16),), fixed=fixed,
                    time_limit=20.0)
    result = solve(crowded)
    assert result.placements == () and result.seconds < 10.0
    # one cycle of neighbourhood runs, ending with the whole model, proved at once
    assert any(f"CP-SAT: {len(RESTARTS)} runs" in line for line in result.log), result.log


def test_stability_bonus_keeps_previous_offer() -> None:
    offers = (offer(1), offer(2))
    reqs = (request(1, {1, 2}),)
    for previous in (1, 2):
        result = solve(Round(reqs, offers, previous={1: previous}, stability_bonus=0.05))
        assert result.placements[0].offer == previous


def test_category_floor_and_ceiling_hold() -> None:
    offers = (offer(1, gpus=16),)
    reqs = (request(1, {1}, merit=9, category="startup"), request(2, {1}, merit=1, category="academic"),
            request(3, {1}, merit=8, category="startup"))
    subsidy = 8 * 168 * 2.0 * 0.5
    round = Round(reqs, offers, category_floor={"academic": subsidy * 0.5},
                  category_ceiling={"startup": subsidy * 1.1})
    result = solve(round)
    assert {p.request for p in result.placements} == {1, 2}
    check(round, result.placements)


def test_infeasible_caps_are_named_and_nothing_is_placed() -> None:
    offers = (offer(1, "A"), offer(2, "B"))
    reqs = (request(1, {1, 2}),)
    round = Round(reqs, offers, caps=Caps(provider=0.3))
    assert any("cap:provider" in c for c in check_feasibility(round))
    result = solve(round)
    assert result.status == "infeasible" and result.placements == () and result.conflicts
    foreign_only = Round(reqs, (offer(1, foreign=True),), caps=Caps(foreign=0.0))
    assert any("cap:foreign" in c for c in check_feasibility(foreign_only))


def test_floor_conflicts_are_named() -> None:
    offers = (offer(1),)
    reqs = (request(1, {1}, category="academic"),)
    round = Round(reqs, offers, budget=100.0, category_floor={"academic": 500.0, "public": 1.0},
                  category_ceiling={"academic": 200.0})
    found = " ".join(check_feasibility(round))
    assert "above its ceiling" in found and "above the budget" in found and "category public" in found


@pytest.fixture(scope="module")
def small() -> tuple[Round, Result, float]:
    # A generous limit: the gap target, not the time, is what this checks (bench/compute.py times it).
    round = dataclasses.replace(generate(7, requests=200, offers=20, providers=6), time_limit=60.0)
    started = time.perf_counter()
    result = solve(round)
    return round, result, time.perf_counter() - started


def test_small_generated_round_is_feasible_and_within_gap(small: tuple[Round, Result, float]) -> None:
    round, result, _ = small
    check(round, result.placements)
    assert result.gap <= 0.01 and result.bound >= result.objective >= result.greedy_objective


def test_greedy_alone_is_feasible() -> None:
    round = generate(3, requests=300, offers=20, providers=6, budget_ratio=0.2)
    placements = greedy(round)
    assert placements
    check(round, placements)
    check(dataclasses.replace(round), solve(dataclasses.replace(round, time_limit=2.0)).placements)


def test_a_small_rounds_highs_thread_ends_soon_after_the_solve(small: tuple[Round, Result, float]) -> None:
    _, result, _ = small
    for thread in [t for t in threading.enumerate() if t.name == "sovstack-highs"]:
        thread.join(timeout=5.0)   # HiGHS may still be noticing the stop of a race the other core won
    assert not [t for t in threading.enumerate() if t.name == "sovstack-highs"]
    assert any("HiGHS" in line for line in result.log) or result.solver in ("lp-rounding+search", "greedy")


def test_a_won_race_does_not_wait_for_a_slow_to_stop_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    released = threading.Event()

    def slow(problem: object, columns: object, start: object, time_limit: float, race: Race) -> None:
        race.finished.wait()
        released.wait(10.0)   # a HiGHS that takes its time to notice the stop
    monkeypatch.setattr(portfolio, "highs_mip", slow)
    started = time.perf_counter()
    result = solve(dataclasses.replace(generate(7, requests=200, offers=20, providers=6), time_limit=20.0))
    assert result.status in ("within_gap", "optimal") and time.perf_counter() - started < 9.0
    assert any("stops in the background" in line for line in result.log), result.log
    helpers = [t for t in threading.enumerate() if t.name == "sovstack-highs"]
    assert helpers and all(t in allocator._WINDING_DOWN for t in helpers)
    released.set()
    allocator._join_winding_down()   # what runs at interpreter exit
    assert not [t for t in threading.enumerate() if t.name == "sovstack-highs"] and not allocator._WINDING_DOWN


def test_a_process_exiting_right_after_solves_exits_cleanly() -> None:
    # real HiGHS threads may still be stopping when solve returns; the interpreter must not abort at exit
    # A generous time limit: on a loaded machine (CI's two cores) the default 10 s could end a solve by
    # the clock, and this test is about the exit, not the speed (bench/allocator.py measures that).
    code = ("import dataclasses\n"
            "from sovstack.compute.allocator import solve; from sovstack.compute.synthetic import generate\n"
            "print(*(solve(dataclasses.replace(generate(s, requests=200, offers=20, providers=6), time_limit=60.0))"
            ".status for s in (5, 11, 18)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) <= {"within_gap", "optimal"}, done.stdout


class _Solver:
    stopped = 0

    def stop_search(self) -> None:
        self.stopped += 1


def test_race_stops_every_solver_once_value_is_within_the_gap_of_the_bound() -> None:
    race = Race(1000.0, 0.01)
    solver = _Solver()
    race.attach(solver)
    race.solution(980.0)
    assert not race.finished.is_set() and race.target() == pytest.approx(990.0)
    race.bound(985.0)   # a tighter proof alone can win the race: 980 is within 1% of 985
    assert race.finished.is_set() and solver.stopped == 1
    late = _Solver()
    race.attach(late)   # a solver attached after the finish is stopped at once
    assert late.stopped == 1


def test_highs_on_the_neighbourhood_returns_an_exactly_feasible_better_allocation() -> None:
    round = generate(7, requests=200, offers=20, providers=6)
    problem = prepare(round)
    lp, _ = solve_relaxation(problem, 10.0)
    start = build(problem, sorted(range(len(problem.columns)), key=lambda c: -lp.x[c]), math.inf)
    assert start.feasible()
    columns = portfolio.neighbourhood(problem, lp.x, lp.reduced, lp.objective, start)
    assert set(start.chosen.values()) <= set(columns) and len(columns) < len(problem.columns)
    race = Race(lp.objective, 0.01)
    found = portfolio.highs_mip(problem, columns, start, 20.0, race)
    assert found is not None and found.feasible() and found.value > start.value
    assert set(found.chosen.values()) <= set(columns)
    check(round, placements(found))


def test_a_failing_helper_is_reported_and_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("HiGHS broke")
    monkeypatch.setattr(portfolio, "highs_mip", broken)
    interval = sys.getswitchinterval()
    with pytest.raises(RuntimeError, match="HiGHS broke"):
        solve(dataclasses.replace(generate(7, requests=200, offers=20, providers=6), time_limit=2.0))
    assert not [t for t in threading.enumerate() if t.name == "sovstack-highs"]
    assert sys.getswitchinterval() == interval


def test_the_switch_interval_is_short_while_any_race_runs_and_restored_after_the_last() -> None:
    interval = sys.getswitchinterval()
    portfolio.SWITCHING.acquire()
    portfolio.SWITCHING.acquire()   # two solves at once, e.g. two programmes in two request threads
    assert sys.getswitchinterval() == pytest.approx(min(interval, portfolio.SWITCH_INTERVAL))
    portfolio.SWITCHING.release()
    assert sys.getswitchinterval() == pytest.approx(min(interval, portfolio.SWITCH_INTERVAL))
    portfolio.SWITCHING.release()
    assert sys.getswitchinterval() == interval
