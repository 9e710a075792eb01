"""Disclosure control for aggregate-mode tables: which queries qualify, the guarded rewrite, the rules.

An aggregate-mode query is one SELECT over one table with only COUNT(*), COUNT(x), COUNT(DISTINCT x),
SUM(x) and AVG(x) outputs plus GROUP BY keys. It is never run as written: ``rewrite`` turns it into
one query that first sums each entity's contribution per group, then adds them up, so the cells and
everything the rules need come from a single scan:

- k: a group with fewer than ``k`` distinct entities has every cell suppressed, its keys included
  (showing the keys of a small group would say who is in the data), and moves to the end of the
  result (so its position does not hint at its keys); a cell to which fewer than ``k`` entities
  contribute is suppressed (COUNT(x): x is not null; SUM(x), AVG(x): the entity's sum is not zero, so
  zeros from a CASE cannot pad a cell that one person makes);
- dominance: a SUM, AVG or COUNT whose top ``n`` entities make up ``share`` or more of the group's
  total (in absolute values) is suppressed;
- rounding: counts that pass are rounded to the nearest multiple of ``rounding``.

The per-entity pass costs a hash aggregation over (keys, entity): several times the user's own query.
When the dataset version's largest number of rows per entity ``R`` is known, ``fast_rewrite`` runs the
user's aggregation once, plus a count and a maximum per cell, and ``fast_control`` proves every rule
from bounds instead: a group of ``n`` rows covers at least ``ceil(n / R)`` entities; an entity's
contribution to a COUNT is at most ``R`` and to a SUM at most ``R * max|x|``, while the cell's total
of absolute contributions is at least ``|sum(x)|``. Only when every group and cell passes on these
bounds is the fast answer used (it is then exactly what the per-entity pass would give); otherwise
the exact per-entity rewrite runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlglot import exp

from sovstack.core.errors import Refused

if TYPE_CHECKING:
    from sovstack.data.sandbox import GrantedTable

CellKind = Literal["key", "count_star", "count", "count_distinct", "sum", "avg", "quantile"]

_LEAKY = (exp.ArrayAgg, exp.GroupConcat, exp.First, exp.Last, exp.AnyValue, exp.ArgMax, exp.ArgMin, exp.Mode,
          exp.Median, exp.Quantile, exp.PercentileCont, exp.PercentileDisc, exp.FirstValue, exp.LastValue)
_NAMED_AGGREGATES = {"mean", "product", "entropy", "mad", "favg", "fsum", "sumkahan"}
_ALLOWED_ARGS = {"expressions", "from_", "where", "group"}
_CLAUSES = {"with_": "WITH (CTEs)", "joins": "JOIN", "having": "HAVING", "order": "ORDER BY", "limit": "LIMIT",
            "offset": "OFFSET", "distinct": "SELECT DISTINCT", "qualify": "QUALIFY", "windows": "WINDOW"}


@dataclass(frozen=True)
class Cell:
    """One output column of an aggregate-mode query."""

    name: str
    kind: CellKind
    key: int = -1                       # for "key": which GROUP BY key
    arg: exp.Expr | None = None   # for aggregates other than COUNT(*)
    alpha: float = 0.5            # for "quantile": which one (answered only with differential privacy)


@dataclass(frozen=True)
class AggregatePlan:
    table: GrantedTable
    source: exp.Table
    where: exp.Expr | None
    keys: tuple[exp.Expr, ...]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Suppression:
    """One cell returned as None, and why."""

    row: int
    column: str
    rule: Literal["k", "dominance"]
    reason: str


@dataclass(frozen=True)
class Disclosed:
    rows: list[list[Any]]
    suppressed: list[Suppression]
    rounded: list[str]


def plan(select: exp.Expr, table: GrantedTable) -> AggregatePlan:
    """The aggregate plan of ``select``, or Refused naming everything that keeps it from qualifying."""
    reasons: list[str] = []
    if not isinstance(select, exp.Select):
        raise Refused("the query was refused", action="data.query", reasons=[
            f"{table.name} is an aggregate-mode table: use one SELECT (no UNION, INTERSECT or EXCEPT)"])
    source = _source(select, table, reasons)
    reasons += _clause_reasons(select, table)
    reasons += _nested_reasons(select)
    if any(isinstance(node, exp.Identifier) and node.name.startswith("__") for node in select.walk()):
        reasons.append("names starting with __ are reserved for disclosure control")
    keys = _keys(select, table, reasons)
    cells = tuple(_cell(projection, keys, table, reasons) for projection in select.expressions)
    where = select.args.get("where")
    if where is not None and any(map(_is_aggregate, where.walk())):
        reasons.append("aggregates are not allowed in WHERE")
    if reasons:
        raise Refused("the query was refused", action="data.query", reasons=list(dict.fromkeys(reasons)))
    assert source is not None
    return AggregatePlan(table=table, source=source, where=where.this if where is not None else None,
                         keys=keys, cells=cells)


def _source(select: exp.Select, table: GrantedTable, reasons: list[str]) -> exp.Table | None:
    source = select.args["from_"].this if select.args.get("from_") else None
    if not isinstance(source, exp.Table) or source.name.lower() != table.name:
        reasons.append(f"{table.name} is an aggregate-mode table: read it directly in FROM, alone")
        return None
    alias = source.args.get("alias")
    if alias is not None and alias.columns:
        reasons.append("column aliases on an aggregate-mode table are not allowed")
    return source


def _clause_reasons(select: exp.Select, table: GrantedTable) -> list[str]:
    reasons = []
    for arg, value in select.args.items():
        if value and arg not in _ALLOWED_ARGS:
            clause = _CLAUSES.get(arg, arg.upper())
            reasons.append(f"{clause} is not allowed on aggregate-mode table {table.name}"
                           + ("; results come sorted by the GROUP BY keys" if arg in ("order", "limit") else ""))
    return reasons


def _nested_reasons(select: exp.Select) -> list[str]:
    reasons = []
    for node in select.walk():
        if node is not select and isinstance(node, exp.Select | exp.Subquery | exp.SetOperation | exp.Exists):
            reasons.append("subqueries are not allowed on aggregate-mode tables")
        elif isinstance(node, exp.Window):
            reasons.append("window functions are not allowed on aggregate-mode tables")
        elif isinstance(node, exp.Filter):
            reasons.append("FILTER (WHERE ...) is not allowed on aggregate-mode tables; use CASE inside the aggregate")
    return reasons


def _keys(select: exp.Select, table: GrantedTable, reasons: list[str]) -> tuple[exp.Expr, ...]:
    group = select.args.get("group")
    if group is None:
        return ()
    if any(value for arg, value in group.args.items() if arg != "expressions"):
        reasons.append("GROUP BY ALL, ROLLUP, CUBE and GROUPING SETS are not allowed on aggregate-mode tables")
    aliases = {projection.alias.lower(): projection.this for projection in select.expressions
               if isinstance(projection, exp.Alias)}
    keys = []
    for item in group.expressions:
        key = item
        if isinstance(item, exp.Literal) and item.is_int and 1 <= int(item.name) <= len(select.expressions):
            key = select.expressions[int(item.name) - 1].unalias()
        elif isinstance(item, exp.Column) and not item.table and item.name.lower() in aliases:
            key = aliases[item.name.lower()]
        reasons += _key_reasons(key, table)
        keys.append(key)
    return tuple(keys)


def _key_reasons(key: exp.Expr, table: GrantedTable) -> list[str]:
    reasons = []
    if isinstance(key, exp.Tuple | exp.Literal | exp.Star):
        reasons.append(f"GROUP BY {key.sql(dialect='duckdb')} is not allowed; group by columns or expressions")
    if any(map(_is_aggregate, key.walk())):
        reasons.append("aggregates cannot be GROUP BY keys")
    assert table.entity_column is not None
    select = key.find_ancestor(exp.Select)
    source = select.args["from_"].this if select is not None and select.args.get("from_") else None
    row_names = {table.name, source.alias.lower()} if isinstance(source, exp.Table) and source.alias else {table.name}
    for column in key.find_all(exp.Column):
        if column.name.lower() == table.entity_column.lower():
            reasons.append(f"the entity column {table.entity_column} cannot be a GROUP BY key")
        elif not column.table and column.name.lower() in row_names:
            reasons.append("the whole row cannot be a GROUP BY key")
    return reasons


def _cell(projection: exp.Expr, keys: Sequence[exp.Expr], table: GrantedTable,
          reasons: list[str]) -> Cell:
    expr = projection.unalias()
    name = projection.alias or expr.sql(dialect="duckdb", comments=False)
    if isinstance(expr, exp.Star) or (isinstance(expr, exp.Column) and isinstance(expr.this, exp.Star)):
        reasons.append("SELECT * returns rows; an aggregate-mode table returns only COUNT, SUM, AVG and GROUP BY keys")
        return Cell(name, "key")
    canonical = [_canonical(key) for key in keys]
    if _canonical(expr) in canonical:
        return Cell(name, "key", key=canonical.index(_canonical(expr)))
    if isinstance(expr, exp.Median | exp.PercentileCont | exp.PercentileDisc):
        return _quantile(name, expr, reasons)
    kind, arg = _aggregate(expr, reasons)
    if kind is None:
        found = [node for node in expr.walk() if isinstance(node, exp.Func) and _is_aggregate(node)]
        reasons.append(_function_reason(found[0]) if found else
                       f"{name} is neither an aggregate nor a GROUP BY key; aggregate-mode tables return only "
                       "COUNT, SUM, AVG and GROUP BY keys")
        return Cell(name, "key")
    if arg is not None and any(map(_is_aggregate, arg.walk())):
        reasons.append("aggregates cannot be nested")
    return Cell(name, kind, arg=arg)


def _quantile(name: str, expr: exp.Median | exp.PercentileCont | exp.PercentileDisc, reasons: list[str]) -> Cell:
    """MEDIAN(x), QUANTILE_CONT(x, a), QUANTILE_DISC(x, a): exact ones are one person's value, so these are
    answered only with differential privacy (``exact_allowed`` says no)."""
    alpha = 0.5
    if not isinstance(expr, exp.Median):
        given = expr.expression
        if not (isinstance(given, exp.Literal) and not given.is_string and 0 <= float(given.this) <= 1):
            reasons.append(f"{name}: the quantile is a number from 0 to 1, written as a literal")
        else:
            alpha = float(given.this)
    return Cell(name, "quantile", arg=expr.this, alpha=alpha)


def exact_allowed(plan: AggregatePlan) -> bool:
    """Whether the plan has an exact, disclosure-controlled form (a quantile is some person's own value)."""
    return all(cell.kind != "quantile" for cell in plan.cells)


def _aggregate(expr: exp.Expr, reasons: list[str]) -> tuple[CellKind | None, exp.Expr | None]:
    if isinstance(expr, exp.Count):
        arg = expr.this
        if arg is None or isinstance(arg, exp.Star):
            return "count_star", None
        if isinstance(arg, exp.Distinct):
            if len(arg.expressions) != 1:
                reasons.append("COUNT(DISTINCT ...) takes one expression here")
            return "count_distinct", arg.expressions[0] if arg.expressions else None
        return "count", arg
    if isinstance(expr, exp.Sum | exp.Avg):
        if isinstance(expr.this, exp.Distinct | exp.Star):
            reasons.append(f"{expr.sql_name()}(DISTINCT ...) and {expr.sql_name()}(*) are not allowed on "
                           "aggregate-mode tables")
        return ("sum" if isinstance(expr, exp.Sum) else "avg"), expr.this
    return None, None


def _function_reason(node: exp.Func) -> str:
    name = node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
    if isinstance(node, exp.Min | exp.Max):
        return f"{name}() reveals one entity's value; aggregate-mode tables allow only COUNT, SUM and AVG"
    if isinstance(node, _LEAKY):
        return f"{name}() returns individual values; aggregate-mode tables allow only COUNT, SUM and AVG"
    return f"{name}() is not allowed on aggregate-mode tables; use COUNT, SUM or AVG (not inside expressions)"


def _is_aggregate(node: exp.Expr) -> bool:
    return isinstance(node, exp.AggFunc) or (isinstance(node, exp.Anonymous) and node.name.lower() in _NAMED_AGGREGATES)


def _canonical(expr: exp.Expr) -> str:
    """Expressions compare equal when they differ only in case or table qualifier (there is one table)."""
    bare = expr.copy()
    for column in bare.find_all(exp.Column):
        column.set("table", None)
    return bare.sql(dialect="duckdb", normalize=True, comments=False)


# --- the rewrite ---------------------------------------------------------------------------------------


def rewrite(plan: AggregatePlan) -> str:
    """One query returning the keys, the cells and the figures the rules need, sorted by the keys."""
    assert plan.table.entity_column is not None
    entity = exp.column(plan.table.entity_column, quoted=True).sql(dialect="duckdb")
    keys = [_sql(key) for key in plan.keys]
    inner = [f'{key} AS "__k{i}"' for i, key in enumerate(keys)] + [f'{entity} AS "__e"', 'count(*) AS "__n"']
    outer = [f'"__k{i}"' for i in range(len(keys))] + ['count("__e") AS "__entities"']
    top_n = plan.table.dominance[0]
    for j, cell in enumerate(plan.cells):
        if cell.kind == "key":
            continue
        value, contribution, more = _cell_sql(cell, j)
        inner += more
        outer.append(f'{value} AS "__v{j}"')
        if cell.kind != "count_star":  # an entity whose sum is zero adds nothing: it does not hide anyone
            nonzero = f'"__s{j}" <> 0' if cell.kind in ("sum", "avg") else f'"__c{j}" > 0'
            outer.append(f'count("__e") FILTER (WHERE {nonzero}) AS "__ce{j}"')
        if contribution:
            outer.append(f'CAST(sum(abs({contribution})) AS DOUBLE) AS "__tot{j}"')
            outer.append(f'CAST(list_sum(max(abs({contribution}), {int(top_n)})) AS DOUBLE) AS "__top{j}"')
    where = f" WHERE {_sql(plan.where)}" if plan.where is not None else ""
    source = plan.source.sql(dialect="duckdb", comments=False)
    inner_sql = f"SELECT {', '.join(inner)} FROM {source}{where} GROUP BY {', '.join([*keys, entity])}"
    key_aliases = [f'"__k{i}"' for i in range(len(keys))]
    group = f" GROUP BY {', '.join(key_aliases)}" if keys else ""
    order = " ORDER BY " + ", ".join(f"{alias} NULLS LAST" for alias in key_aliases) if keys else ""
    return f"SELECT {', '.join(outer)} FROM ({inner_sql}) AS per_entity{group}{order}"


def _cell_sql(cell: Cell, j: int) -> tuple[str, str | None, list[str]]:
    """The outer value, the per-entity contribution the dominance rule weighs, and the inner columns."""
    if cell.kind == "count_star":
        return 'CAST(sum("__n") AS BIGINT)', '"__n"', []
    assert cell.arg is not None
    arg = _sql(cell.arg)
    counted = [f'count({arg}) AS "__c{j}"']
    if cell.kind == "count":
        return f'CAST(sum("__c{j}") AS BIGINT)', f'"__c{j}"', counted
    if cell.kind == "count_distinct":
        values = f'list(DISTINCT {arg}) FILTER (WHERE {arg} IS NOT NULL) AS "__d{j}"'
        return f'CAST(list_unique(flatten(list("__d{j}"))) AS BIGINT)', None, [*counted, values]
    summed = [*counted, f'sum({arg}) AS "__s{j}"']
    if cell.kind == "sum":
        return f'sum("__s{j}")', f'"__s{j}"', summed
    return f'CAST(sum("__s{j}") AS DOUBLE) / NULLIF(sum("__c{j}"), 0)', f'"__s{j}"', summed


def fast_rewrite(plan: AggregatePlan) -> str:
    """The user's aggregation in one pass, with what ``fast_control`` needs to bound every rule."""
    keys = [_sql(key) for key in plan.keys]
    out = [f'{key} AS "__k{i}"' for i, key in enumerate(keys)] + ['count(*) AS "__n"']
    for j, cell in enumerate(plan.cells):
        if cell.kind == "key":
            continue
        if cell.kind == "count_star":
            out.append(f'count(*) AS "__v{j}"')
            continue
        assert cell.arg is not None
        arg = _sql(cell.arg)
        counted = f"count(*) FILTER (WHERE {arg} <> 0)" if cell.kind in ("sum", "avg") else f"count({arg})"
        out.append(f'{counted} AS "__c{j}"')
        if cell.kind == "count":
            out.append(f'count({arg}) AS "__v{j}"')
        elif cell.kind == "count_distinct":
            out.append(f'count(DISTINCT {arg}) AS "__v{j}"')
        else:
            out.append(f'sum({arg}) AS "__s{j}"')
            out.append(f'CAST(max(abs({arg})) AS DOUBLE) AS "__m{j}"')
            value = f'sum({arg})' if cell.kind == "sum" else f'CAST(sum({arg}) AS DOUBLE) / NULLIF(count({arg}), 0)'
            out.append(f'{value} AS "__v{j}"')
    where = f" WHERE {_sql(plan.where)}" if plan.where is not None else ""
    source = plan.source.sql(dialect="duckdb", comments=False)
    aliases = [f'"__k{i}"' for i in range(len(keys))]
    group = f" GROUP BY {', '.join(aliases)}" if keys else ""
    order = " ORDER BY " + ", ".join(f"{alias} NULLS LAST" for alias in aliases) if keys else ""
    return f"SELECT {', '.join(out)} FROM {source}{where}{group}{order}"


def fast_applies(plan: AggregatePlan) -> bool:
    """Whether bounds could ever prove this plan's rules (a sum over people with several rows never can)."""
    most = plan.table.max_rows_per_entity
    return bool(most) and (most == 1 or all(cell.kind not in ("sum", "avg") for cell in plan.cells))


def fast_control(plan: AggregatePlan, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Disclosed | None:
    """The fast pass's rows with the rules applied, if bounds prove that every group and cell passes; else None."""
    rows_per_entity = plan.table.max_rows_per_entity
    if not rows_per_entity:
        return None
    at = {name: i for i, name in enumerate(columns)}
    out: list[list[Any]] = []
    for row in rows:
        if not _provably_passes(plan, at, row, rows_per_entity):
            return None
        out.append([row[at[f"__k{cell.key}"]] if cell.kind == "key" else _rounded(plan, cell, row[at[f"__v{j}"]])
                    for j, cell in enumerate(plan.cells)])
    counts = ("count_star", "count", "count_distinct")
    rounded = [cell.name for cell in plan.cells if cell.kind in counts] if plan.table.rounding > 1 else []
    return Disclosed(rows=out, suppressed=[], rounded=rounded)


def _provably_passes(plan: AggregatePlan, at: dict[str, int], row: Sequence[Any], most: int) -> bool:
    """True when no group or cell of ``row`` could be suppressed, whatever the entities' rows are."""
    k, (top_n, share) = plan.table.k, plan.table.dominance
    if -(-row[at["__n"]] // most) < k:
        return False
    for j, cell in enumerate(plan.cells):
        if cell.kind == "key":
            continue
        if cell.kind in ("sum", "avg") and most > 1:
            return False  # one entity's rows can cancel to a zero contribution: only the exact pass can tell
        counted = row[at["__n"]] if cell.kind == "count_star" else row[at[f"__c{j}"]]
        if -(-counted // most) < k:
            return False
        if cell.kind in ("count_star", "count") and top_n * most >= share * counted:
            return False
        if cell.kind in ("sum", "avg"):
            total, largest = row[at[f"__s{j}"]], row[at[f"__m{j}"]]
            if total is None or largest is None or top_n * most * largest >= share * abs(float(total)):
                return False
    return True


def _rounded(plan: AggregatePlan, cell: Cell, value: Any) -> Any:
    if cell.kind in ("count_star", "count", "count_distinct") and value is not None:
        return _round(int(value), plan.table.rounding)
    return value


def _sql(expr: exp.Expr) -> str:
    return "(" + expr.sql(dialect="duckdb", comments=False) + ")"


# --- the rules -----------------------------------------------------------------------------------------


def control(plan: AggregatePlan, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Disclosed:
    """The user's rows with the rules applied: small groups last and blank, dominated cells blank, counts rounded."""
    at = {name: i for i, name in enumerate(columns)}
    table = plan.table
    passing: list[tuple[list[Any], list[tuple[str, str, str]]]] = []
    failing: list[tuple[list[Any], list[tuple[str, str, str]]]] = []
    for row in rows:
        if row[at["__entities"]] < table.k:
            reason = f"fewer than {table.k} distinct entities in this group (k<{table.k})"
            failing.append(([None] * len(plan.cells), [(cell.name, "k", reason) for cell in plan.cells]))
        else:
            passing.append(_apply_cell_rules(plan, at, row))
    suppressed = [Suppression(index, column, rule, reason)  # type: ignore[arg-type]
                  for index, (_, marks) in enumerate(passing + failing) for column, rule, reason in marks]
    counts = ("count_star", "count", "count_distinct")
    rounded = [cell.name for cell in plan.cells if cell.kind in counts] if table.rounding > 1 else []
    return Disclosed(rows=[values for values, _ in passing + failing], suppressed=suppressed, rounded=rounded)


def _apply_cell_rules(plan: AggregatePlan, at: dict[str, int],
                      row: Sequence[Any]) -> tuple[list[Any], list[tuple[str, str, str]]]:
    table = plan.table
    top_n, share = table.dominance
    values: list[Any] = []
    marks: list[tuple[str, str, str]] = []
    for j, cell in enumerate(plan.cells):
        if cell.kind == "key":
            values.append(row[at[f"__k{cell.key}"]])
            continue
        value = row[at[f"__v{j}"]]
        contributors = row[at[f"__ce{j}"]] if f"__ce{j}" in at else row[at["__entities"]]
        total = row[at[f"__tot{j}"]] if f"__tot{j}" in at else None
        top = row[at[f"__top{j}"]] if f"__top{j}" in at else None
        if contributors < table.k:
            marks.append((cell.name, "k", f"fewer than {table.k} distinct entities contribute to this cell "
                                          f"(k<{table.k})"))
            value = None
        elif total and top is not None and top >= share * total:
            marks.append((cell.name, "dominance", f"the top {top_n} entities make up {share:.0%} or more of "
                                                  f"this cell (dominance top{top_n}>={share:.0%})"))
            value = None
        elif cell.kind in ("count_star", "count", "count_distinct") and value is not None:
            value = _round(value, table.rounding)
        values.append(value)
    return values, marks


def _round(count: int, base: int) -> int:
    return (count + base // 2) // base * base if base > 1 else count
