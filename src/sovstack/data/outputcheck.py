"""Output checking of an exact result held in the airlock: what a steward needs to release or refuse it.

    assess(plan, columns, rows, overlaps) -> OutputCheck     cells, suppression, warnings, differencing
    overlap_sql(plan, earlier) -> str                       the differencing query run in the sandbox worker

The rows come from ``disclosure.rewrite``, which computes per cell the entities with a non-zero
contribution and the top-n contributors. The checks are those statistics offices and OpenSAFELY apply
to outputs (SDC rules of thumb):

- primary suppression: a group with fewer than ``k`` entities (the whole row, its keys too), a cell to
  which fewer than ``k`` entities contribute something other than zero, a cell whose top ``n``
  contributors make ``share`` or more of it (dominance);
- secondary suppression: in every line of the table along each GROUP BY key (the other keys fixed),
  a lone suppressed cell would follow from the line's total, so the smallest other cell is suppressed
  too, until no line has exactly one;
- differencing: each group against each group of the results already released to the same person from
  the same dataset version; two groups whose people differ by fewer than ``k`` let their difference
  describe those few people;
- warnings a rule cannot decide, for the steward to read: the entity column used to pick rows, a
  condition inside an aggregate (a contribution shaped per person), a constant added inside one (it
  defeats the dominance rule).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlglot import exp

from sovstack.data.disclosure import AggregatePlan

Status = Literal["ok", "primary", "secondary"]


@dataclass
class CellCheck:
    row: int
    column: str
    value: Any
    entities: int              # with a non-zero contribution
    top_share: float | None    # of the top-n contributors, in absolute values
    status: Status = "ok"
    rule: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Overlap:
    """A group of this result and one of an earlier release whose people differ by only a few."""

    release: int
    group: str
    their_group: str
    entities: int
    their_entities: int
    apart: int


@dataclass
class OutputCheck:
    columns: list[str]
    groups: list[str]                       # each row's keys, as the steward reads them
    group_entities: list[int]
    cells: list[CellCheck]
    warnings: list[str] = field(default_factory=list)
    overlaps: list[Overlap] = field(default_factory=list)

    def released_rows(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """The rows that may leave: suppressed cells blank, groups suppressed whole left out."""
        blank = {(c.row, c.column) for c in self.cells if c.status != "ok"}
        dropped = {c.row for c in self.cells if c.rule == "k-group"}
        return [[None if (i, name) in blank else value for name, value in zip(self.columns, row, strict=True)]
                for i, row in enumerate(rows) if i not in dropped]

    def summary(self) -> dict[str, int]:
        count: defaultdict[str, int] = defaultdict(int)
        for cell in self.cells:
            count[cell.status] += 1
        return {"cells": len(self.cells), "primary": count["primary"], "secondary": count["secondary"],
                "groups_withheld": len({c.row for c in self.cells if c.rule == "k-group"}),
                "overlaps": len(self.overlaps), "warnings": len(self.warnings)}

    def public(self) -> dict[str, Any]:
        return {"summary": self.summary(), "groups": self.groups, "group_entities": self.group_entities,
                "cells": [asdict(c) for c in self.cells], "warnings": self.warnings,
                "overlaps": [asdict(o) for o in self.overlaps]}


def assess(plan: AggregatePlan, columns: Sequence[str], rows: Sequence[Sequence[Any]],
           overlaps: Sequence[Overlap] = ()) -> tuple[OutputCheck, list[list[Any]]]:
    """The output check of the rewrite's ``rows``, and the exact result as the analyst asked for it."""
    at = {name: i for i, name in enumerate(columns)}
    names = [cell.name for cell in plan.cells]
    exact = [[row[at[f"__k{cell.key}"]] if cell.kind == "key" else row[at[f"__v{j}"]]
              for j, cell in enumerate(plan.cells)] for row in rows]
    check = OutputCheck(columns=names, groups=[_label(plan, row, at) for row in rows],
                        group_entities=[int(row[at["__entities"]]) for row in rows], cells=[],
                        warnings=warnings(plan), overlaps=list(overlaps))
    for i, row in enumerate(rows):
        check.cells += _primary(plan, at, i, row)
    _secondary(plan, check, [tuple(row[at[f"__k{d}"]] for d in range(len(plan.keys))) for row in rows])
    return check, exact


def _label(plan: AggregatePlan, row: Sequence[Any], at: dict[str, int]) -> str:
    if not plan.keys:
        return "all rows"
    values = [row[at[f"__k{d}"]] for d in range(len(plan.keys))]
    return ", ".join(f"{_sql(key)}={'NULL' if value is None else value}" for key, value in zip(plan.keys, values,
                                                                                               strict=True))


def _primary(plan: AggregatePlan, at: dict[str, int], i: int, row: Sequence[Any]) -> list[CellCheck]:
    table = plan.table
    top_n, share = table.dominance
    group_small = row[at["__entities"]] < table.k
    out = []
    for j, cell in enumerate(plan.cells):
        if cell.kind == "key":
            value, entities, top = row[at[f"__k{cell.key}"]], int(row[at["__entities"]]), None
        else:
            value = row[at[f"__v{j}"]]
            entities = int(row[at[f"__ce{j}"]] if f"__ce{j}" in at else row[at["__entities"]])
            total = row[at[f"__tot{j}"]] if f"__tot{j}" in at else None
            top = (row[at[f"__top{j}"]] / total) if total else None
        check = CellCheck(i, cell.name, value, entities, round(top, 6) if top is not None else None)
        if group_small:
            check.status, check.rule = "primary", "k-group"
            check.reason = f"the group has {row[at['__entities']]} entities, fewer than k={table.k}: withheld whole"
        elif cell.kind != "key" and entities < table.k:
            check.status, check.rule = "primary", "k"
            check.reason = f"{entities} entities contribute a non-zero amount, fewer than k={table.k}"
        elif cell.kind != "key" and top is not None and top >= share:
            check.status, check.rule = "primary", "dominance"
            check.reason = f"the top {top_n} contributors make {top:.0%} of the cell (limit {share:.0%})"
        out.append(check)
    return out


def _secondary(plan: AggregatePlan, check: OutputCheck, keys: list[tuple[Any, ...]]) -> None:
    """Suppress more cells until no line of the table along any key has exactly one suppressed cell."""
    dims = len(plan.keys)
    if dims == 0:
        return
    by_cell = {(c.row, c.column): c for c in check.cells}
    values = [cell.name for cell in plan.cells if cell.kind != "key"]
    lines: dict[tuple[int, tuple[Any, ...]], list[int]] = defaultdict(list)
    for row, key in enumerate(keys):
        for d in range(dims):
            lines[(d, key[:d] + key[d + 1:])].append(row)
    for column in values:
        changed = True
        while changed:
            changed = False
            for members in lines.values():
                if len(members) < 2:
                    continue
                hidden = [r for r in members if by_cell[(r, column)].status != "ok"]
                if len(hidden) != 1:
                    continue
                shown = [r for r in members if by_cell[(r, column)].status == "ok"]
                smallest = min(shown, key=lambda r: _size(by_cell[(r, column)].value))
                cell = by_cell[(smallest, column)]
                cell.status, cell.rule = "secondary", "complementary"
                cell.reason = ("suppressed so the line's total cannot give back the cell suppressed in row "
                               f"{hidden[0] + 1}")
                changed = True


def _size(value: Any) -> float:
    return abs(float(value)) if isinstance(value, int | float) else float("inf")


def warnings(plan: AggregatePlan) -> list[str]:
    """What the rules cannot decide but a steward should look at, in the query itself."""
    out = []
    entity = (plan.table.entity_column or "").lower()
    if plan.where is not None and any(c.name.lower() == entity for c in plan.where.find_all(exp.Column)):
        out.append(f"WHERE uses the entity column {plan.table.entity_column}: rows are picked by who they are "
                   "about; check that the selection is not a few people")
    for cell in plan.cells:
        if cell.arg is None:
            continue
        if any(c.name.lower() == entity for c in cell.arg.find_all(exp.Column)) and cell.kind != "count_distinct":
            out.append(f"{cell.name} computes with the entity column {plan.table.entity_column}")
        if any(isinstance(node, exp.Case | exp.If | exp.Predicate) for node in cell.arg.walk()):
            out.append(f"{cell.name} has a condition inside the aggregate: each person's contribution can be "
                       "shaped by it (e.g. one person's value, everyone else's zero); read the condition")
        if any(isinstance(node, exp.Add | exp.Sub) and any(isinstance(side, exp.Literal) for side in
                                                           (node.left, node.right)) for node in cell.arg.walk()):
            out.append(f"{cell.name} adds a constant inside the aggregate: it hides how much one person "
                       "contributes from the dominance rule; compare with a plain count of the same rows")
    return out


def overlap_sql(plan: AggregatePlan, earlier: Sequence[tuple[int, AggregatePlan]]) -> str:
    """One query giving, for each group here and each group of an earlier release, how far apart their
    people are, when that is between 1 and k-1 and both groups are big enough to have been shown."""
    k = plan.table.k
    parts = [f"SELECT DISTINCT {release} AS r, {_group_sql(other)} AS g, {_entity(other)} AS e "
             f"FROM {_source(other)}{_where(other)}" for release, other in earlier]
    return (f"WITH a AS (SELECT DISTINCT {_group_sql(plan)} AS g, {_entity(plan)} AS e "
            f"FROM {_source(plan)}{_where(plan)}), "
            f"b AS ({' UNION ALL '.join(parts)}), "
            "na AS (SELECT g, count(*) AS n FROM a GROUP BY g), "
            "nb AS (SELECT r, g, count(*) AS n FROM b GROUP BY r, g), "
            "s AS (SELECT b.r, a.g AS ga, b.g AS gb, count(*) AS shared FROM a JOIN b ON a.e = b.e "
            "GROUP BY b.r, a.g, b.g) "
            "SELECT s.r, s.ga, s.gb, na.n, nb.n, na.n + nb.n - 2 * s.shared AS apart "
            "FROM s JOIN na ON na.g = s.ga JOIN nb ON nb.r = s.r AND nb.g = s.gb "
            f"WHERE na.n >= {k} AND nb.n >= {k} AND na.n + nb.n - 2 * s.shared BETWEEN 1 AND {k - 1} "
            "ORDER BY apart, s.r, s.ga, s.gb")


def sizes_within(mine: Sequence[int], theirs: Sequence[int], k: int) -> bool:
    """Whether some group here and some group there differ in size by fewer than ``k`` people (only then
    can their people differ by fewer than ``k``: |A △ B| >= ||A| - |B||)."""
    ordered = sorted(theirs)
    for size in mine:
        at = bisect.bisect_left(ordered, size - k + 1)
        if at < len(ordered) and ordered[at] < size + k:
            return True
    return False


def overlaps_of(rows: Sequence[Sequence[Any]]) -> list[Overlap]:
    return [Overlap(int(r), str(ga), str(gb), int(na), int(nb), int(apart)) for r, ga, gb, na, nb, apart in rows]


def _group_sql(plan: AggregatePlan) -> str:
    if not plan.keys:
        return "'all rows'"
    parts = [f"'{_sql(key).replace(chr(39), chr(39) * 2)}=' || coalesce(CAST({_sql(key)} AS VARCHAR), 'NULL')"
             for key in plan.keys]
    return " || ', ' || ".join(parts)


def _entity(plan: AggregatePlan) -> str:
    assert plan.table.entity_column is not None
    return exp.column(plan.table.entity_column, quoted=True).sql(dialect="duckdb")


def _source(plan: AggregatePlan) -> str:
    return plan.source.sql(dialect="duckdb", comments=False)


def _where(plan: AggregatePlan) -> str:
    return f" WHERE {_sql(plan.where)}" if plan.where is not None else ""


def _sql(expr: exp.Expr) -> str:
    return expr.sql(dialect="duckdb", comments=False)
