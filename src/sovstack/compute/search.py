"""Local search: place a left-out request by evicting lower-value placements that block it.

Each move tries one column of an unplaced request; while a constraint blocks it, it evicts the
placed column that gives the most of the blocking resource per unit of value, stops if the
evicted value reaches the newcomer's, then re-places the evicted requests where they still fit.
The move is kept only if the ledger's value rises and every row still holds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

from sovstack.compute.columns import Problem
from sovstack.compute.ledger import Ledger

MAX_EVICTIONS = 12
COLUMNS_PER_REQUEST = 3
SMALL_ROUND = 20_000   # columns


def improve(ledger: Ledger, priority: Sequence[int], deadline: float, target: float = math.inf,
            stop: threading.Event | None = None) -> Ledger:
    """Apply improving eviction moves, requests in ``priority`` order, until none helps, the value
    reaches ``target``, time is up or ``stop`` is set (another solver got there first)."""
    problem = ledger.problem
    # small rounds can afford to try every column of a request
    width = COLUMNS_PER_REQUEST if len(problem.columns) > SMALL_ROUND else len(problem.columns)
    victims = _Victims(problem)
    for _ in range(3):
        improved = False
        for i in priority:
            if time.perf_counter() > deadline or ledger.value >= target or (stop is not None and stop.is_set()):
                return ledger
            if i in ledger.chosen:
                continue
            for c in problem.by_request_ranked[i][:width]:
                trial = _evict_for(ledger, c, victims)
                if trial is not None:
                    ledger, improved = trial, True
                    break
        if not improved:
            break
    return ledger


def _evict_for(ledger: Ledger, c: int, victims: _Victims) -> Ledger | None:
    """The ledger with ``c`` placed after evictions, if that is worth more; else None."""
    problem, cols = ledger.problem, ledger.problem.columns
    value = cols.value[c]
    if value <= 0:
        return None
    trial = ledger.copy()
    evicted: list[int] = []
    lost = 0.0
    while blockers := trial.blockers(c):
        if len(evicted) >= MAX_EVICTIONS:
            return None
        victim = victims.pick(trial, c, blockers[0])
        if victim is None:
            return None
        lost += cols.value[victim]
        if lost >= value:
            return None
        trial.remove(victim)
        evicted.append(victim)
    trial.add(c)
    for victim in evicted:
        for other in problem.by_request[cols.request[victim]]:
            if trial.fits(other):
                trial.add(other)
                break
    if trial.value <= ledger.value * (1 + 1e-12) or not trial.feasible():
        return None
    return trial


class _Victims:
    """Per column, what evicting it frees per unit of value, computed once per search.

    Choosing a victim is the search's inner loop: it scans every placed column for each blocked
    addition, so the ratios are looked up rather than recomputed.
    """

    def __init__(self, problem: Problem) -> None:
        cols = problem.columns
        value = [max(v, 1e-9) for v in cols.value]
        gpus = [problem.requests[i].gpus for i in cols.request]
        self.offer, self.start = cols.offer, cols.start
        self.end = [s + n for s, n in zip(cols.start, cols.length, strict=True)]
        self.gpus_per_value = [g / v for g, v in zip(gpus, value, strict=True)]
        self.subsidy_per_value = [s / v for s, v in zip(cols.subsidy, value, strict=True)]
        self.hours_per_value = [h / v for h, v in zip(cols.gpu_hours, value, strict=True)]
        self.category = [problem.requests[i].category for i in cols.request]
        self.offer_caps = problem.offer_caps

    def pick(self, ledger: Ledger, c: int, kind: str) -> int | None:
        """The placed column that frees most of the blocking resource ``kind`` per unit of value
        (the first such in placement order on ties); None if no placed column frees any."""
        placed = ledger.chosen.values()
        if kind == "capacity":
            o, first, last = self.offer[c], self.start[c], self.end[c]
            offer, start, end, rate = self.offer, self.start, self.end, self.gpus_per_value
            scored = [((min(last, end[v]) - max(first, start[v])) * rate[v], v) for v in placed
                      if offer[v] == o and start[v] < last and end[v] > first]
        elif kind == "budget":
            scored = [(self.subsidy_per_value[v], v) for v in placed]
        elif kind == "category_ceiling":
            category = self.category[c]
            scored = [(self.subsidy_per_value[v], v) for v in placed if self.category[v] == category]
        else:
            key = next((k for k in self.offer_caps[self.offer[c]] if "cap:" + k[0] == kind), None)
            holders = {o for o, keys in enumerate(self.offer_caps) if key in keys}
            scored = [(self.hours_per_value[v], v) for v in placed if self.offer[v] in holders]
        best, best_ratio = None, 0.0
        for ratio, v in scored:
            if ratio > best_ratio:
                best, best_ratio = v, ratio
        return best


def rank_columns(problem: Problem, score: Sequence[float]) -> None:
    """Order each request's columns by ``score`` (highest first) for the moves to try."""
    problem.by_request_ranked = [sorted(cs, key=lambda c: -score[c]) for cs in problem.by_request]
