"""The room every constraint has left while columns are added and removed.

Share caps are ratios, so they are not monotone: adding GPU-hours on one provider uses its room
but gives room to every other provider. ``blockers`` therefore checks an addition against the
total it will reach, or against a ``projected`` total when a caller builds an allocation up
from nothing and repairs it afterwards.
"""

from __future__ import annotations

import math

from sovstack.compute.columns import TOLERANCE, CapKey, Problem


class Ledger:
    """Mutable state of one allocation under construction; cheap to copy."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.free = [row[:] for row in problem.free]
        self.subsidy = problem.fixed_subsidy
        self.category = dict(problem.fixed_category)
        self.load = dict(problem.fixed_load)
        self.total = problem.fixed_total
        self.value = 0.0
        self.chosen: dict[int, int] = {}   # request index -> column

    def copy(self) -> Ledger:
        """An independent ledger with the same allocation."""
        other = Ledger.__new__(Ledger)
        other.problem = self.problem
        other.free = [row[:] for row in self.free]
        other.subsidy, other.total, other.value = self.subsidy, self.total, self.value
        other.category, other.load, other.chosen = dict(self.category), dict(self.load), dict(self.chosen)
        return other

    def blockers(self, c: int, projected: float = 0.0) -> list[str]:
        """Constraint kinds that adding column ``c`` would break (empty if it fits).

        Caps are checked against ``max(total after adding, projected)``.
        """
        p, cols = self.problem, self.problem.columns
        kinds: list[str] = []
        o, start, gpus = cols.offer[c], cols.start[c], p.requests[cols.request[c]].gpus
        row = self.free[o]
        if any(row[t] < gpus for t in range(start, start + cols.length[c])):
            kinds.append("capacity")
        sub = cols.subsidy[c]
        if self.subsidy + sub > p.round.budget * (1 + TOLERANCE) + TOLERANCE:
            kinds.append("budget")
        category = p.requests[cols.request[c]].category
        ceiling = p.round.category_ceiling.get(category, math.inf)
        if self.category.get(category, 0.0) + sub > ceiling * (1 + TOLERANCE) + TOLERANCE:
            kinds.append("category_ceiling")
        g = cols.gpu_hours[c]
        total = max(self.total + g, projected)
        for key in p.offer_caps[o]:
            if self.load.get(key, 0.0) + g > p.limits[key[0]] * total * (1 + TOLERANCE) + TOLERANCE:
                kinds.append("cap:" + key[0])
        return kinds

    def fits(self, c: int, projected: float = 0.0) -> bool:
        """Whether column ``c`` can be added without breaking a constraint."""
        return not self.blockers(c, projected)

    def add(self, c: int) -> None:
        """Place column ``c`` (its request must not be placed yet)."""
        self._shift(c, +1)
        self.chosen[self.problem.columns.request[c]] = c

    def remove(self, c: int) -> None:
        """Take column ``c`` out of the allocation."""
        self._shift(c, -1)
        del self.chosen[self.problem.columns.request[c]]

    def _shift(self, c: int, sign: int) -> None:
        p, cols = self.problem, self.problem.columns
        o, request = cols.offer[c], p.requests[cols.request[c]]
        row = self.free[o]
        for t in range(cols.start[c], cols.start[c] + cols.length[c]):
            row[t] -= sign * request.gpus
        sub, g = cols.subsidy[c], cols.gpu_hours[c]
        self.subsidy += sign * sub
        self.category[request.category] = self.category.get(request.category, 0.0) + sign * sub
        for key in p.offer_caps[o]:
            self.load[key] = self.load.get(key, 0.0) + sign * g
        self.total += sign * g
        self.value += sign * cols.value[c]

    def cap_excess(self) -> dict[CapKey, float]:
        """GPU-hours by which each violated cap row is over its share of the total."""
        limits = self.problem.limits
        return {key: excess for key, load in self.load.items()
                if (excess := load - limits[key[0]] * self.total) > TOLERANCE * max(1.0, self.total)}

    def floor_shortfall(self) -> dict[str, float]:
        """Subsidy still missing per category floor."""
        return {cat: floor - spent for cat, floor in self.problem.round.category_floor.items()
                if (spent := self.category.get(cat, 0.0)) < floor * (1 - TOLERANCE) - TOLERANCE}

    def feasible(self) -> bool:
        """Whether the allocation meets every cap and floor (the other rows hold by construction)."""
        return not self.cap_excess() and not self.floor_shortfall()
