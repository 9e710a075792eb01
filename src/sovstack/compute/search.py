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
    for _ in range(3):
        improved = False
        for i in priority:
            if time.perf_counter() > deadline or ledger.value >= target or (stop is not None and stop.is_set()):
                return ledger
            if i in ledger.chosen:
                continue
            for c in problem.by_request_ranked[i][:width]:
                trial = _evict_for(ledger, c)
                if trial is not None:
                    ledger, improved = trial, True
                    break
        if not improved:
            break
    return ledger


def _evict_for(ledger: Ledger, c: int) -> Ledger | None:
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
        victim = _victim(trial, c, blockers[0])
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


def _victim(ledger: Ledger, c: int, kind: str) -> int | None:
    """The placed column that frees most of the blocking resource per unit of value."""
    problem, cols = ledger.problem, ledger.problem.columns
    o, first, last = cols.offer[c], cols.start[c], cols.start[c] + cols.length[c]
    category = problem.requests[cols.request[c]].category
    cap_key = next((k for k in problem.offer_caps[o] if "cap:" + k[0] == kind), None)
    best, best_ratio = None, 0.0
    for v in ledger.chosen.values():
        if kind == "capacity":
            overlap = min(last, cols.start[v] + cols.length[v]) - max(first, cols.start[v])
            freed: float = overlap * problem.requests[cols.request[v]].gpus if cols.offer[v] == o and overlap > 0 else 0
        elif kind in ("budget", "category_ceiling"):
            same = kind == "budget" or problem.requests[cols.request[v]].category == category
            freed = cols.subsidy[v] if same else 0.0
        else:
            freed = cols.gpu_hours[v] if cap_key in problem.offer_caps[cols.offer[v]] else 0.0
        if freed > 0:
            ratio = freed / max(cols.value[v], 1e-9)
            if ratio > best_ratio:
                best, best_ratio = v, ratio
    return best


def rank_columns(problem: Problem, score: Sequence[float]) -> None:
    """Order each request's columns by ``score`` (highest first) for the moves to try."""
    problem.by_request_ranked = [sorted(cs, key=lambda c: -score[c]) for cs in problem.by_request]
