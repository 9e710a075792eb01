"""SQL over granted datasets: checked before it runs, run locked down, disclosure-controlled after.

    check(sql, tables) -> CheckedQuery                       Refused / BadInput with reasons
    run_query(sql, tables, limits=Limits()) -> QueryResult   check, run in the worker, control

The checker is an allowlist over sqlglot's DuckDB syntax tree: one SELECT (or UNION/INTERSECT/EXCEPT
of SELECTs), reading only granted tables and CTEs by name, calling only listed functions. What runs
is the checked tree regenerated as SQL (never the text as sent), and it is parsed again to prove the
regeneration means the same tree. A query that reads an aggregate-mode table must also qualify for
disclosure control (``disclosure.plan``) and runs as its guarded rewrite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from sovstack.core.errors import BadInput, Refused
from sovstack.data import disclosure, engine
from sovstack.data.disclosure import AggregatePlan, Suppression
from sovstack.data.engine import LimitExceeded, Limits

__all__ = ["CheckedQuery", "GrantedTable", "LimitExceeded", "Limits", "QueryResult", "Suppression", "check",
           "run_checked", "run_exact", "run_query"]

MAX_SQL_CHARS = 100_000
_SCHEMA_ERRORS = ("Binder Error", "Parser Error", "Catalog Error")  # about names, never about values

# Syntax that may appear anywhere in a checked query; tables and functions have their own checks below.
_SYNTAX: frozenset[type[exp.Expr]] = frozenset({
    exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery, exp.With, exp.CTE, exp.From, exp.Join,
    exp.Where, exp.Group, exp.Having, exp.Qualify, exp.Order, exp.Ordered, exp.Limit, exp.Offset, exp.Distinct,
    exp.Column, exp.Identifier, exp.Star, exp.Literal, exp.Null, exp.Boolean, exp.Alias, exp.TableAlias,
    exp.Paren, exp.Tuple, exp.Array, exp.Bracket, exp.Struct, exp.PropertyEQ, exp.Interval, exp.DataType,
    exp.DataTypeParam, exp.Window, exp.WindowSpec, exp.Filter, exp.Exists, exp.Any, exp.All,
    exp.And, exp.Or, exp.Not, exp.Xor, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ,
    exp.NullSafeNEQ, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike, exp.Escape, exp.Add, exp.Sub, exp.Mul,
    exp.Div, exp.IntDiv, exp.Mod, exp.Neg, exp.DPipe, exp.BitwiseAnd, exp.BitwiseOr, exp.BitwiseXor,
    exp.BitwiseNot, exp.BitwiseLeftShift, exp.BitwiseRightShift, exp.Case, exp.If, exp.Cast, exp.TryCast,
})

# Functions by sqlglot class: pure computations on values, and the aggregates and window functions.
_FUNCTIONS: frozenset[type[exp.Expr]] = frozenset({
    exp.Abs, exp.Round, exp.Floor, exp.Ceil, exp.Sqrt, exp.Ln, exp.Log, exp.Exp, exp.Pow, exp.Sign, exp.Trunc,
    exp.Greatest, exp.Least, exp.Coalesce, exp.Nullif, exp.IsNan, exp.IsInf, exp.Pi,
    exp.Lower, exp.Upper, exp.Length, exp.Trim, exp.Substring, exp.Replace, exp.Concat, exp.ConcatWs, exp.Left,
    exp.Right, exp.StartsWith, exp.EndsWith, exp.Contains, exp.StrPosition, exp.Pad, exp.SplitPart,
    exp.RegexpLike, exp.RegexpReplace, exp.RegexpExtract, exp.RegexpFullMatch, exp.Reverse, exp.Repeat,
    exp.Ascii, exp.Chr, exp.Translate, exp.Levenshtein, exp.BitLength, exp.MD5, exp.Split,
    exp.TimestampTrunc, exp.DateTrunc, exp.Extract, exp.Year, exp.Month, exp.Day, exp.DayOfWeek, exp.Hour,
    exp.Week, exp.Quarter, exp.Dayname, exp.Monthname, exp.LastDay, exp.TimeToStr, exp.StrToTime,
    exp.DateFromParts, exp.TimestampFromParts, exp.CurrentDate, exp.CurrentTimestamp, exp.DateDiff, exp.DateAdd,
    exp.DateSub, exp.TimeToUnix, exp.UnixToTime,
    exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Median, exp.PercentileCont, exp.PercentileDisc, exp.Mode,
    exp.Stddev, exp.StddevSamp, exp.StddevPop, exp.Variance, exp.VariancePop, exp.Corr, exp.CovarPop,
    exp.CovarSamp, exp.GroupConcat, exp.ArrayAgg, exp.First, exp.Last, exp.AnyValue, exp.IgnoreNulls,
    exp.ArgMax, exp.ArgMin, exp.LogicalAnd, exp.LogicalOr, exp.CountIf, exp.ApproxDistinct,
    exp.RowNumber, exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist, exp.Ntile, exp.Lag, exp.Lead,
    exp.FirstValue, exp.LastValue, exp.NthValue,
    exp.ArrayContains, exp.ArraySize, exp.ArrayDistinct,
})

# Functions sqlglot does not model (exp.Anonymous), by DuckDB name.
_NAMED_FUNCTIONS = frozenset({
    "date_part", "datepart", "age", "century", "epoch_ms", "mean", "gcd", "lcm", "list_sum", "list_avg",
    "list_min", "list_max", "cardinality", "strlen", "nfc_normalize", "product", "entropy", "mad", "favg",
    "fsum", "sumkahan", "regexp_split_to_array",
})

# Named in refusals so the analyst learns why, not only that: they read files, settings or the catalogue.
_READS_OUTSIDE = ("read_", "glob", "parquet_", "sniff_csv", "query", "getenv", "getvariable", "current_setting",
                  "duckdb_", "pragma_", "file_", "which_secret", "sql_auto_complete", "iceberg", "delta_",
                  "json_execute")

_DATE_PART_PARENTS = (exp.Extract, exp.TimestampTrunc, exp.DateTrunc, exp.DateDiff, exp.DateAdd, exp.DateSub,
                      exp.Interval)


@dataclass(frozen=True)
class GrantedTable:
    """A dataset version the analyst may query, under the SQL name they write."""

    name: str
    path: Path
    mode: Literal["full", "aggregate"]
    entity_column: str | None = None
    k: int = 10
    rounding: int = 5
    dominance: tuple[int, float] = (2, 0.9)
    max_rows_per_entity: int | None = None  # of the version's file, if known: lets disclosure control use bounds

    def __post_init__(self) -> None:
        if not engine.TABLE_NAME.fullmatch(self.name):
            raise BadInput(f"{self.name!r} is not a table name (lower-case letters, digits and _)", field="name")
        if self.mode not in ("full", "aggregate"):
            raise BadInput(f"mode must be full or aggregate, not {self.mode!r}", field="mode")
        if self.mode == "aggregate" and not self.entity_column:
            raise BadInput(f"aggregate-mode table {self.name} needs its entity column", field="entity_column")
        if self.k < 1 or self.rounding < 1:
            raise BadInput("k and rounding must be at least 1", field="k" if self.k < 1 else "rounding")
        top_n, share = self.dominance
        if top_n < 1 or not 0 < share <= 1:
            raise BadInput("dominance is (n >= 1, 0 < share <= 1)", field="dominance")


@dataclass(frozen=True)
class CheckedQuery:
    """A query that passed the checker, and what the worker will run for it."""

    sql: str                        # the query as checked, regenerated by sqlglot: what parse_hash hashes
    parse_hash: str
    mode: Literal["full", "aggregate"]
    tables: tuple[str, ...]         # the granted tables it reads
    engine_sql: str                 # ``sql`` itself, or its disclosure-control rewrite
    plan: AggregatePlan | None = None
    fast_sql: str | None = None     # the one-pass aggregation tried first when bounds can prove the rules


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    rows_out: int
    suppressed: list[Suppression]
    parse_hash: str
    mode: str
    rounded: list[str] = field(default_factory=list)   # columns whose counts were rounded
    seconds: float = 0.0                               # in the worker, excluding its start-up


def check(sql: str, tables: Sequence[GrantedTable]) -> CheckedQuery:
    """The checked query, or Refused (with a reason per problem) / BadInput (it does not parse)."""
    granted = _by_name(tables)
    try:
        return _check(_parse_one(sql), granted)
    except RecursionError:
        raise BadInput("the query is nested too deeply", field="sql") from None


def _check(tree: exp.Expr, granted: dict[str, GrantedTable]) -> CheckedQuery:
    reasons = _Checker(granted).reasons(tree)
    if reasons:
        raise Refused("the query was refused", action="data.query", reasons=list(dict.fromkeys(reasons)))
    normalised = tree.sql(dialect="duckdb", comments=False)
    if sqlglot.parse_one(normalised, read="duckdb") != tree:
        raise Refused("the query was refused", action="data.query",
                      reasons=["the query does not survive normalisation unchanged"])
    used = tuple(dict.fromkeys(table.name.lower() for table in _granted_references(tree, granted)))
    parse_hash = hashlib.sha256(normalised.encode()).hexdigest()
    aggregate = [granted[name] for name in used if granted[name].mode == "aggregate"]
    if not aggregate:
        return CheckedQuery(normalised, parse_hash, "full", used, normalised)
    if len(used) > 1:
        raise Refused("the query was refused", action="data.query", reasons=[
            f"{aggregate[0].name} is an aggregate-mode table: it cannot be joined or combined with other tables"])
    plan = disclosure.plan(tree, aggregate[0])
    if not disclosure.exact_allowed(plan):  # answered only with differential privacy: no exact form to run
        return CheckedQuery(normalised, parse_hash, "aggregate", used, "", plan)
    fast = disclosure.fast_rewrite(plan) if disclosure.fast_applies(plan) else None
    return CheckedQuery(normalised, parse_hash, "aggregate", used, disclosure.rewrite(plan), plan, fast)


def run_query(sql: str, tables: Sequence[GrantedTable], limits: Limits = Limits()) -> QueryResult:
    """Check ``sql``, run it in a locked-down worker that can read only the tables it names, then control it."""
    return run_checked(check(sql, tables), tables, limits)


def run_checked(checked: CheckedQuery, tables: Sequence[GrantedTable], limits: Limits = Limits()) -> QueryResult:
    """Run a query ``check`` passed, as ``run_query`` does (for callers that needed the checked form first)."""
    files = {table.name: table.path for table in tables if table.name in checked.tables}
    seconds = 0.0
    if checked.plan is not None and not checked.engine_sql:
        raise no_exact_form()
    if checked.plan is not None and checked.fast_sql is not None:
        fast = _execute(checked, checked.fast_sql, files, limits)
        disclosed = disclosure.fast_control(checked.plan, fast.columns, fast.rows)
        if disclosed is not None:
            return _controlled(checked, disclosed, fast.truncated, fast.seconds)
        seconds = fast.seconds
    result = _execute(checked, checked.engine_sql, files, limits)
    if checked.plan is None:
        return QueryResult(result.columns, result.rows, result.truncated, len(result.rows), [], checked.parse_hash,
                           checked.mode, seconds=result.seconds)
    disclosed = disclosure.control(checked.plan, result.columns, result.rows)
    return _controlled(checked, disclosed, result.truncated, seconds + result.seconds)


def run_exact(checked: CheckedQuery, tables: Sequence[GrantedTable], sql: str | None = None,
              limits: Limits = Limits()) -> engine.EngineResult:
    """The per-entity rewrite of an aggregate query (or ``sql`` built from its plan), unsuppressed: for the
    airlock's output check, whose result no one but a steward sees until it is released."""
    assert checked.plan is not None
    if not checked.engine_sql:
        raise no_exact_form()
    files = {table.name: table.path for table in tables if table.name in checked.tables}
    return _execute(checked, sql or checked.engine_sql, files, limits)


def no_exact_form() -> Refused:
    return Refused("the query was refused", action="data.query", reasons=[
        "medians and quantiles of an aggregate-mode table are answered only with differential privacy: an exact "
        "one is some person's own value"])


def about_names(exc: BadInput) -> bool:
    """Whether an engine error is about the query's names (the same for any data), not about values."""
    return exc.message.startswith(_SCHEMA_ERRORS)


def _controlled(checked: CheckedQuery, disclosed: disclosure.Disclosed, truncated: bool,
                seconds: float) -> QueryResult:
    assert checked.plan is not None
    return QueryResult([cell.name for cell in checked.plan.cells], disclosed.rows, truncated, len(disclosed.rows),
                       disclosed.suppressed, checked.parse_hash, checked.mode, rounded=disclosed.rounded,
                       seconds=seconds)


def _execute(checked: CheckedQuery, sql: str, files: dict[str, Path], limits: Limits) -> engine.EngineResult:
    try:
        return engine.execute(sql, files, limits)
    except LimitExceeded:
        raise
    except BadInput as exc:
        if checked.plan is None or exc.message.startswith(_SCHEMA_ERRORS):
            raise
        # Conversion and range errors quote the offending value: of a table the analyst may not see row by row.
        kind = exc.message.split(":", 1)[0]
        raise BadInput(f"{kind}: the details are withheld because they can quote values of an aggregate-mode table",
                       field="sql") from None


def _by_name(tables: Sequence[GrantedTable]) -> dict[str, GrantedTable]:
    granted: dict[str, GrantedTable] = {}
    for table in tables:
        if table.name in granted:
            raise BadInput(f"table {table.name} is granted twice", field="tables")
        granted[table.name] = table
    return granted


def _parse_one(sql: str) -> exp.Expr:
    if len(sql) > MAX_SQL_CHARS:
        raise BadInput(f"the query is longer than {MAX_SQL_CHARS} characters", field="sql")
    try:
        statements = [tree for tree in sqlglot.parse(sql, read="duckdb") if tree is not None]
    except SqlglotError as exc:
        raise _unparsed(sql, exc) from None
    if not statements:
        raise BadInput("the query is empty", field="sql")
    if len(statements) > 1:
        raise Refused("the query was refused", action="data.query",
                      reasons=[f"{len(statements)} statements were sent; send a single SELECT"])
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise Refused("the query was refused", action="data.query",
                      reasons=[f"{_statement_kind(tree, sql)} statements are not allowed; send a single SELECT"])
    return tree


def _unparsed(sql: str, exc: SqlglotError) -> Exception:
    """A statement sqlglot cannot parse (EXPORT DATABASE, ...) is refused by its first word; other text is bad."""
    first = _first_word(sql)
    if first and first not in ("SELECT", "WITH", "FROM", "VALUES"):
        return Refused("the query was refused", action="data.query",
                       reasons=[f"{first} statements are not allowed; send a single SELECT"])
    return BadInput(f"the SQL does not parse: {str(exc).splitlines()[0]}", field="sql")


def _statement_kind(tree: exp.Expr, sql: str) -> str:
    """What the analyst sent, in their word for it (sqlglot reads CHECKPOINT as a column, for one)."""
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    first = _first_word(sql)
    return tree.key.upper() if first in ("", "WITH") else first


def _first_word(sql: str) -> str:
    words = sql.lstrip(" \t\r\n(").split(None, 1)
    return words[0].upper() if words and words[0].isalpha() else ""


def _granted_references(tree: exp.Expr, granted: dict[str, GrantedTable]) -> list[exp.Table]:
    return [table for table in tree.find_all(exp.Table)
            if table.name.lower() in granted and table.name.lower() not in _ctes_in_scope(table)]


def _ctes_in_scope(node: exp.Expr) -> set[str]:
    """The CTE names ``node`` can see, as DuckDB resolves them: enclosing WITHs, earlier siblings only."""
    names: set[str] = set()
    child, parent = node, node.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            ctes = parent.expressions
            index = next((i for i, cte in enumerate(ctes) if cte is child), len(ctes))
            visible = ctes[: index + 1] if parent.args.get("recursive") else ctes[:index]
            names |= {cte.alias_or_name.lower() for cte in visible}
        elif isinstance(parent, exp.Query) and (with_ := parent.args.get("with_")) is not None and with_ is not child:
            names |= {cte.alias_or_name.lower() for cte in with_.expressions}
        child, parent = parent, parent.parent
    return names


class _Checker:
    """Walks a parsed query and collects every reason to refuse it."""

    def __init__(self, granted: dict[str, GrantedTable]) -> None:
        self.granted = granted

    def reasons(self, tree: exp.Expr) -> list[str]:
        found: list[str] = []
        for node in tree.walk():
            if isinstance(node, exp.Table):
                found += self._table(node)
            elif isinstance(node, exp.CTE):
                found += self._cte(node)
            elif isinstance(node, exp.Anonymous):
                found += self._named_function(node)
            elif isinstance(node, exp.Var):
                found += self._var(node)
            elif type(node) in _FUNCTIONS:
                continue
            elif type(node) in _SYNTAX:
                found += self._syntax(node)
            else:
                found.append(self._unsupported(node))
        return found

    def _table(self, table: exp.Table) -> list[str]:
        if not isinstance(table.this, exp.Identifier):
            return [f"table function {_function_name(table.this)}() is not allowed; read granted tables by name"]
        extra = [arg for arg, value in table.args.items() if value and arg not in ("this", "alias")]
        if table.args.get("db") or table.args.get("catalog"):
            return [f"{table.sql(dialect='duckdb')}: name granted tables without a schema or catalogue"]
        if extra:
            return [f"{', '.join(arg.upper() for arg in extra)} on table {table.name} is not supported"]
        name = table.name.lower()
        if name in self.granted or name in _ctes_in_scope(table):
            return []
        if any(mark in name for mark in "/\\.:~"):
            return [f"'{table.name}' is a file path or URL; only granted tables can be read"]
        return [f"{table.name} is not a granted table; granted: {', '.join(sorted(self.granted)) or 'none'}"]

    def _cte(self, cte: exp.CTE) -> list[str]:
        extra = [arg for arg, value in cte.args.items() if value and arg not in ("this", "alias", "materialized")]
        if cte.alias_or_name.lower() in self.granted:
            return [f"a CTE cannot take the name of granted table {cte.alias_or_name}"]
        return [f"{arg.upper()} in a CTE is not supported" for arg in extra]

    def _named_function(self, node: exp.Anonymous) -> list[str]:
        name = node.name.lower()
        if name in _NAMED_FUNCTIONS:
            return []
        if name.startswith(_READS_OUTSIDE):
            return [f"{name}() reads files, settings or the catalogue and is not allowed"]
        return [f"{name}() is not on the list of allowed functions"]

    def _var(self, node: exp.Var) -> list[str]:
        if isinstance(node.parent, _DATE_PART_PARENTS):
            return []
        return [f"{node.name} is not supported here"]

    def _syntax(self, node: exp.Expr) -> list[str]:
        if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
            return [f"the type {node.sql(dialect='duckdb')} is not supported"]
        if isinstance(node, exp.Query):
            extra = [arg for arg, value in node.args.items() if value and arg in _QUERY_EXTRAS]
            return [f"{arg.upper()} is not supported in sandbox queries" for arg in extra]
        return []

    def _unsupported(self, node: exp.Expr) -> str:
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name.startswith(_READS_OUTSIDE):
                return f"{name}() reads files, settings or the catalogue and is not allowed"
            return f"{name}() is not on the list of allowed functions"
        return f"{node.key.upper()} is not supported in sandbox queries"


# Query arguments that change what or where a query reads or writes (SELECT INTO, FOR UPDATE, ...).
_QUERY_EXTRAS = frozenset({"into", "locks", "laterals", "pivots", "connect", "match", "prewhere", "sample",
                           "settings", "format", "options", "for_", "hint", "kind", "operation_modifiers",
                           "distribute", "sort", "cluster", "exclude", "side", "on"})


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key
