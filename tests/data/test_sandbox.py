"""The checker, the aggregate rewrite and disclosure control, run end to end in the real worker."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from sovstack.core.errors import BadInput, Refused
from sovstack.data import disclosure, engine
from sovstack.data.ingest import max_rows_per_entity, object_path
from sovstack.data.sandbox import GrantedTable, LimitExceeded, Limits, QueryResult, check, run_query

from .conftest import SECRET_TEXT, Files


def refusal(sql: str, tables: list[GrantedTable]) -> str:
    """The refusal's reasons as one line; the query must not have reached the worker."""
    with pytest.raises(Refused) as caught:
        run_query(sql, tables)
    assert caught.value.reasons, sql
    line = caught.value.line()
    assert "root:" not in line and "PAR1" not in line and SECRET_TEXT not in line
    return line


def by_key(result: QueryResult) -> dict[object, list[object]]:
    return {row[0]: row[1:] for row in result.rows}


# --- reading outside the grant -------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "named"), [
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv()"),
    ("SELECT * FROM '/etc/passwd'", "is a file path or URL"),
    ('SELECT * FROM "/etc/passwd"', "is a file path or URL"),
    ("SELECT * FROM 'https://example.org/x.parquet'", "is a file path or URL"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text()"),
    ("SELECT * FROM read_blob('/etc/passwd')", "read_blob()"),
    ("SELECT * FROM read_json('/etc/passwd')", "read_json()"),
    ("SELECT * FROM glob('/etc/*')", "glob()"),
    ("SELECT * FROM parquet_scan('/etc/passwd')", "parquet_scan()"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "sniff_csv()"),
    ("SELECT * FROM query_table('visits_full')", "query_table()"),
    ("SELECT * FROM query('SELECT 1')", "query()"),
    ("SELECT * FROM range(10)", "table function"),
    ("SELECT getenv('HOME')", "getenv()"),
    ("SELECT current_setting('allowed_paths')", "current_setting()"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings()"),
    ("SELECT * FROM duckdb_views", "duckdb_views is not a granted table"),
    ("SELECT * FROM information_schema.tables", "without a schema"),
    ("SELECT * FROM main.visits_full", "without a schema"),
    ("SELECT * FROM secret", "secret is not a granted table"),
])
def test_reading_outside_the_grant_is_refused(sql: str, named: str, tables: list[GrantedTable]) -> None:
    assert named in refusal(sql, tables)


def test_the_granted_parquet_file_itself_cannot_be_read_as_bytes(files: Files, tables: list[GrantedTable]) -> None:
    line = refusal(f"SELECT content FROM read_blob('{files.visits}')", tables)
    assert "read_blob()" in line


@pytest.mark.parametrize(("sql", "named"), [
    ("COPY (SELECT * FROM visits_full) TO '{tmp}/x.csv'", "COPY statements"),
    ("ATTACH '{tmp}/x.db' AS x", "ATTACH statements"),
    ("DETACH x", "DETACH statements"),
    ("EXPORT DATABASE '{tmp}/export'", "EXPORT statements"),
    ("IMPORT DATABASE '{tmp}/export'", "IMPORT statements"),
    ("INSTALL httpfs", "INSTALL statements"),
    ("LOAD httpfs", "LOAD statements"),
    ("SET memory_limit = '10GB'", "SET statements"),
    ("RESET memory_limit", "RESET statements"),
    ("PRAGMA enable_profiling", "PRAGMA statements"),
    ("CALL pragma_version()", "CALL statements"),
    ("CREATE TABLE t AS SELECT 1", "CREATE statements"),
    ("INSERT INTO regions VALUES ('x', 'y')", "INSERT statements"),
    ("UPDATE regions SET code = 'x'", "UPDATE statements"),
    ("DELETE FROM regions", "DELETE statements"),
    ("DESCRIBE regions", "DESCRIBE statements"),
    ("SUMMARIZE clinic_visits", "SUMMARIZE statements"),
    ("EXPLAIN ANALYZE SELECT * FROM regions", "EXPLAIN statements"),
    ("CHECKPOINT", "CHECKPOINT statements"),
    ("WITH x AS (SELECT 1) INSERT INTO regions SELECT 'a', 'b'", "INSERT statements"),
    ("SELECT 1; SELECT 2", "2 statements were sent"),
    ("SELECT * FROM regions; COPY regions TO '{tmp}/x.csv'", "2 statements were sent"),
])
def test_anything_but_one_select_is_refused(sql: str, named: str, tables: list[GrantedTable], tmp_path: Path) -> None:
    assert named in refusal(sql.format(tmp=tmp_path), tables)
    assert list(tmp_path.iterdir()) == []


def test_what_runs_is_the_checked_tree_not_the_text(tables: list[GrantedTable]) -> None:
    # A quoted type name would be printed back raw; sqlglot reads some as a plain type and drops the rest.
    assert "not supported" in refusal('SELECT CAST(code AS "my type") FROM regions', tables)
    smuggled = """SELECT code::"int) FROM regions; SELECT * FROM read_csv('/etc/passwd') --" FROM regions"""
    assert "BLOCK" in refusal(smuggled, tables)
    assert check('SELECT code::"int) FROM x --" FROM regions', tables).sql == "SELECT CAST(code AS INT) FROM regions"


def test_a_cte_cannot_hide_a_catalogue_view(tables: list[GrantedTable]) -> None:
    # The outer duckdb_views is DuckDB's; the CTE of that name is visible only inside its subquery.
    assert "duckdb_views is not a granted table" in refusal(
        "SELECT * FROM duckdb_views, (WITH duckdb_views AS (SELECT 1 AS x) SELECT * FROM duckdb_views)", tables)
    assert "cannot take the name of granted table" in refusal(
        "WITH regions AS (SELECT * FROM clinic_visits) SELECT * FROM regions", tables)


def test_unknown_constructs_are_refused(tables: list[GrantedTable]) -> None:
    assert "not on the list of allowed functions" in refusal("SELECT nextval('s') FROM regions", tables)
    assert "is not supported" in refusal("SELECT * FROM regions, LATERAL (SELECT 1)", tables)
    assert "not supported" in refusal("SELECT * FROM regions TABLESAMPLE 10%", tables)


def test_unparseable_sql_is_bad_input(tables: list[GrantedTable]) -> None:
    with pytest.raises(BadInput, match="does not parse"):
        run_query("SELECT FROM WHERE (", tables)
    with pytest.raises(BadInput, match="empty"):
        run_query(" ; ", tables)


# --- full mode -----------------------------------------------------------------------------------------


def test_full_mode_runs_joins_ctes_and_window_functions(tables: list[GrantedTable]) -> None:
    result = run_query("""
        WITH per_person AS (SELECT person_id, region, count(*) AS visits FROM visits_full GROUP BY ALL)
        SELECT r.code, p.person_id, p.visits,
               row_number() OVER (PARTITION BY r.code ORDER BY p.visits DESC, p.person_id) AS rank
        FROM per_person p JOIN regions r USING (region)
        WHERE r.code = 'E' ORDER BY rank""", tables)
    assert result.mode == "full" and result.suppressed == []
    assert result.columns == ["code", "person_id", "visits", "rank"]
    assert result.rows == [["E", 41, 3, 1], ["E", 44, 3, 2], ["E", 40, 2, 3], ["E", 43, 2, 4], ["E", 42, 1, 5]]


def test_full_mode_rows_are_capped(tables: list[GrantedTable]) -> None:
    result = run_query("SELECT person_id, visit_date FROM visits_full ORDER BY person_id, visit_date", tables,
                       Limits(max_rows=3))
    assert result.rows == [[0, "2024-01-01"], [1, "2024-01-01"], [1, "2024-01-02"]]
    assert result.truncated and result.rows_out == 3


def test_a_duckdb_error_is_clean_bad_input(tables: list[GrantedTable]) -> None:
    with pytest.raises(BadInput) as caught:
        run_query("SELECT no_such_column FROM regions", tables)
    assert caught.value.message.startswith("Binder Error: Referenced column \"no_such_column\" not found")
    assert "\n" not in caught.value.message and "Traceback" not in caught.value.message


def test_a_runaway_cross_join_is_stopped(tables: list[GrantedTable]) -> None:
    started = time.monotonic()
    with pytest.raises(LimitExceeded, match="ran longer than 1 s"):
        run_query("SELECT count(*) FROM visits_full a, visits_full b, visits_full c, visits_full d, visits_full e",
                  tables, Limits(seconds=1))
    assert time.monotonic() - started < 1 + engine.GRACE_SECONDS


def test_a_runaway_recursive_cte_is_stopped(tables: list[GrantedTable]) -> None:
    started = time.monotonic()
    with pytest.raises(LimitExceeded):
        run_query("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
                  tables, Limits(seconds=1, memory_mb=128))
    assert time.monotonic() - started < 1 + engine.GRACE_SECONDS


def test_the_parse_hash_ignores_layout_and_comments(tables: list[GrantedTable]) -> None:
    one = check("select  code\nfrom regions -- which codes\n", tables)
    two = check("SELECT code FROM regions /* the same */", tables)
    assert one.parse_hash == two.parse_hash and len(one.parse_hash) == 64
    assert one.sql == "SELECT code FROM regions" and one.tables == ("regions",)
    assert check("SELECT region FROM regions", tables).parse_hash != one.parse_hash


# --- aggregate mode: what qualifies --------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "named"), [
    ("SELECT * FROM clinic_visits", "SELECT * returns rows"),
    ("SELECT name FROM clinic_visits", "neither an aggregate nor a GROUP BY key"),
    ("FROM clinic_visits", "SELECT * returns rows"),
    ("SELECT region, list(name) FROM clinic_visits GROUP BY region", "returns individual values"),
    ("SELECT region, array_agg(name) FROM clinic_visits GROUP BY region", "returns individual values"),
    ("SELECT region, string_agg(name, ',') FROM clinic_visits GROUP BY region", "returns individual values"),
    ("SELECT region, first(name) FROM clinic_visits GROUP BY region", "returns individual values"),
    ("SELECT region, arg_max(name, amount) FROM clinic_visits GROUP BY region", "returns individual values"),
    ("SELECT region, median(amount) FROM clinic_visits GROUP BY region", "some person's own value"),
    ("SELECT region, min(amount) FROM clinic_visits GROUP BY region", "reveals one entity's value"),
    ("SELECT region, max(visit_date) FROM clinic_visits GROUP BY region", "reveals one entity's value"),
    ("SELECT region, stddev(amount) FROM clinic_visits GROUP BY region", "not allowed on aggregate-mode tables"),
    ("SELECT region, sum(amount) / count(*) FROM clinic_visits GROUP BY region", "not allowed on aggregate-mode"),
    ("SELECT region, count(*) OVER () FROM clinic_visits", "window functions"),
    ("SELECT person_id, count(*) FROM clinic_visits GROUP BY person_id", "entity column person_id"),
    ("SELECT count(*) FROM clinic_visits GROUP BY person_id % 2", "entity column person_id"),
    ("SELECT count(*) FROM clinic_visits c GROUP BY c", "whole row"),
    ("SELECT region, count(*) FROM clinic_visits GROUP BY region HAVING count(*) > 1", "HAVING"),
    ("SELECT region, count(*) FROM clinic_visits GROUP BY region ORDER BY 2", "ORDER BY"),
    ("SELECT count(*) FROM clinic_visits LIMIT 1", "LIMIT"),
    ("SELECT region, count(*) FROM clinic_visits GROUP BY ROLLUP (region)", "ROLLUP"),
    ("SELECT count(*) FILTER (WHERE region = 'east') FROM clinic_visits", "FILTER"),
    ("SELECT sum(DISTINCT amount) FROM clinic_visits", "DISTINCT"),
    ("SELECT sum(*) FROM clinic_visits", "SUM(*)"),
    ("SELECT count(*) FROM clinic_visits WHERE amount > (SELECT 1)", "subqueries"),
    ("WITH c AS (SELECT * FROM clinic_visits) SELECT count(*) FROM c", "WITH"),
    ("SELECT count(*) FROM clinic_visits UNION ALL SELECT count(*) FROM clinic_visits", "UNION"),
    ("SELECT count(*) FROM clinic_visits JOIN regions USING (region)", "cannot be joined"),
    ("SELECT * FROM visits_full WHERE person_id IN (SELECT person_id FROM clinic_visits)", "cannot be joined"),
])
def test_aggregate_mode_refuses_what_would_leak(sql: str, named: str, tables: list[GrantedTable]) -> None:
    assert named in refusal(sql, tables)


def test_aggregate_mode_names_every_problem(tables: list[GrantedTable]) -> None:
    with pytest.raises(Refused) as caught:
        check("SELECT name, min(amount) FROM clinic_visits ORDER BY 1", tables)
    assert len(caught.value.reasons) == 3


# --- aggregate mode: disclosure control ----------------------------------------------------------------


def test_groups_below_k_are_suppressed_and_groups_at_k_are_not(tables: list[GrantedTable]) -> None:
    result = run_query("SELECT region, count(*) AS visits, count(DISTINCT person_id) AS people "
                       "FROM clinic_visits GROUP BY region", tables)
    assert result.mode == "aggregate" and result.columns == ["region", "visits", "people"]
    # north 30 people, south exactly 10 (= k), west 15; east (5) is blank, last, with its key hidden.
    assert result.rows == [["north", 60, 30], ["south", 20, 10], ["west", 30, 15], [None, None, None]]
    assert [(s.row, s.column, s.rule) for s in result.suppressed] == [
        (3, "region", "k"), (3, "visits", "k"), (3, "people", "k")]
    assert "fewer than 10 distinct entities" in result.suppressed[0].reason
    assert result.rows_out == 4 and not result.truncated


def test_counts_are_rounded_to_the_base(tables: list[GrantedTable]) -> None:
    # person 0-10: 21 visits by 11 people; south: 19 visits.
    result = run_query("SELECT count(*) AS n, count(amount) AS m FROM clinic_visits WHERE person_id <= 10", tables)
    assert result.rows == [[20, 20]] and result.rounded == ["n", "m"] and result.suppressed == []
    assert by_key(run_query("SELECT region, count(*) FROM clinic_visits GROUP BY 1", tables))["south"] == [20]


def test_a_dominated_sum_is_suppressed(tables: list[GrantedTable]) -> None:
    result = run_query("SELECT region, sum(amount) AS total, avg(amount) AS mean, count(*) AS n "
                       "FROM clinic_visits GROUP BY region", tables)
    rows = by_key(result)
    assert rows["north"] == [600, 10.0, 60] and rows["south"] == [190, 10.0, 20]
    assert rows["west"] == [None, None, 30]  # person 45's 100,000 is over 90% of west's total
    west = [s for s in result.suppressed if s.row == 2]
    assert [(s.column, s.rule) for s in west] == [("total", "dominance"), ("mean", "dominance")]
    assert "top 2 entities" in west[0].reason


def test_a_cell_built_around_one_person_is_suppressed(tables: list[GrantedTable]) -> None:
    result = run_query("SELECT sum(CASE WHEN name = 'person 3' THEN amount ELSE 0 END) AS one_sum, "
                       "count(CASE WHEN name = 'person 3' THEN 1 END) AS one_count, count(*) AS everyone "
                       "FROM clinic_visits", tables)
    assert result.rows == [[None, None, 120]]
    # one person makes the sum: everyone else's zero hides no one, so it fails k (not only dominance)
    assert [(s.column, s.rule) for s in result.suppressed] == [("one_sum", "k"), ("one_count", "k")]


def test_a_group_of_one_person_is_blank(tables: list[GrantedTable]) -> None:
    result = run_query("SELECT region, count(*) FROM clinic_visits WHERE name = 'person 3' GROUP BY region", tables)
    assert result.rows == [[None, None]]


def test_keys_by_alias_position_and_expression(tables: list[GrantedTable]) -> None:
    expected = {"NORTH": [600], "SOUTH": [190], "WEST": [None], None: [None]}
    for sql in ["SELECT upper(region) AS r, sum(amount) FROM clinic_visits GROUP BY r",
                "SELECT upper(region), sum(amount) FROM clinic_visits GROUP BY 1",
                "SELECT upper(region), sum(amount) FROM clinic_visits AS c GROUP BY upper(c.region)"]:
        assert by_key(run_query(sql, tables)) == expected, sql


def test_aggregate_mode_with_no_rows_is_suppressed(tables: list[GrantedTable]) -> None:
    result = run_query("SELECT count(*) AS n FROM clinic_visits WHERE false", tables)
    assert result.rows == [[None]] and result.suppressed[0].rule == "k"


def test_aggregate_rules_come_from_the_grant(files: Files) -> None:
    lenient = [GrantedTable("clinic_visits", files.visits, "aggregate", entity_column="person_id", k=5,
                            rounding=1, dominance=(1, 1.0))]
    result = run_query("SELECT region, count(*), sum(amount) FROM clinic_visits GROUP BY region", lenient)
    assert result.rows == [["east", 11, 110], ["north", 60, 600], ["south", 19, 190], ["west", 30, 100290]]
    assert result.suppressed == [] and result.rounded == []


def test_grants_are_validated(files: Files) -> None:
    with pytest.raises(BadInput, match="needs its entity column"):
        GrantedTable("t", files.visits, "aggregate")
    with pytest.raises(BadInput, match="not a table name"):
        GrantedTable("Bad-Name", files.visits, "full")
    with pytest.raises(BadInput, match="granted twice"):
        check("SELECT 1", [GrantedTable("t", files.visits, "full")] * 2)


def test_count_with_no_argument_counts_rows(tables: list[GrantedTable]) -> None:
    assert run_query("SELECT count() AS n FROM clinic_visits", tables).rows == [[120]]


def test_the_rewrite_names_cannot_be_used(tables: list[GrantedTable]) -> None:
    assert "reserved" in refusal('SELECT "__e", count(*) FROM clinic_visits GROUP BY "__e"', tables)


def test_errors_that_quote_values_of_an_aggregate_table_are_withheld(tables: list[GrantedTable]) -> None:
    with pytest.raises(BadInput) as caught:
        run_query("SELECT sum(CAST(name AS INTEGER)) FROM clinic_visits", tables)
    assert caught.value.message.startswith("Conversion Error: the details are withheld")
    assert "person" not in caught.value.line()
    with pytest.raises(BadInput, match="person"):  # full mode: the analyst may see the rows anyway
        run_query("SELECT sum(CAST(name AS INTEGER)) FROM visits_full", tables)
    with pytest.raises(BadInput, match='Referenced column "nope" not found'):  # names, not values: kept
        run_query("SELECT sum(nope) FROM clinic_visits", tables)


def test_deep_nesting_is_bad_input(tables: list[GrantedTable]) -> None:
    with pytest.raises(BadInput, match="nested too deeply"):
        check("SELECT " + "(" * 5000 + "1" + ")" * 5000, tables)


# --- the bounded fast path ----------------------------------------------------------------------------

FAST_CASES = [
    "SELECT region, count(*) AS visits, count(DISTINCT person_id) AS people FROM clinic_visits GROUP BY region",
    "SELECT count(*) AS n, count(amount) AS m FROM clinic_visits WHERE person_id <= 10",
    "SELECT region, sum(amount) AS total, avg(amount) AS mean, count(*) AS n FROM clinic_visits GROUP BY region",
    "SELECT sum(CASE WHEN name = 'person 3' THEN amount ELSE 0 END) AS one_sum, "
    "count(CASE WHEN name = 'person 3' THEN 1 END) AS one_count, count(*) AS everyone FROM clinic_visits",
    "SELECT region, count(*) FROM clinic_visits WHERE name = 'person 3' GROUP BY region",
    "SELECT count(*) AS n, sum(amount) AS total FROM clinic_visits WHERE region = 'north'",
    "SELECT count(*) AS n, avg(amount) AS mean FROM clinic_visits",
    "SELECT region, count(*) FROM clinic_visits WHERE amount < 0 GROUP BY region",
]


@pytest.mark.parametrize("sql", FAST_CASES)
def test_the_fast_path_answers_exactly_as_the_per_entity_pass(sql: str, files: Files) -> None:
    exact = [GrantedTable("clinic_visits", files.visits, "aggregate", entity_column="person_id")]
    bounded = [GrantedTable("clinic_visits", files.visits, "aggregate", entity_column="person_id",
                            max_rows_per_entity=3)]
    slow, fast = run_query(sql, exact), run_query(sql, bounded)
    assert (fast.rows, fast.suppressed, fast.rounded) == (slow.rows, slow.suppressed, slow.rounded)


def test_bounds_decide_when_the_fast_answer_is_enough(files: Files) -> None:
    table = GrantedTable("clinic_visits", files.visits, "aggregate", entity_column="person_id", max_rows_per_entity=3)

    def fast(sql: str) -> disclosure.Disclosed | None:
        checked = check(sql, [table])
        assert checked.plan is not None and checked.fast_sql is not None
        ran = engine.execute(checked.fast_sql, {"clinic_visits": files.visits}, Limits())
        return disclosure.fast_control(checked.plan, ran.columns, ran.rows)

    assert fast("SELECT count(*) AS n FROM clinic_visits") is not None  # 120 rows: at least 40 people
    assert fast("SELECT region, count(*) FROM clinic_visits GROUP BY region") is None  # east may be small
    assert fast("SELECT region, count(*) FROM clinic_visits WHERE region = 'north' GROUP BY region") is not None
    # a person's rows can cancel to a zero sum, so with several rows each only the exact pass can count them
    summed = check("SELECT region, sum(amount) FROM clinic_visits WHERE region = 'north' GROUP BY region", [table])
    assert summed.fast_sql is None
    loose = GrantedTable("clinic_visits", files.visits, "aggregate", entity_column="person_id",
                         max_rows_per_entity=100)
    assert check("SELECT count(*) FROM clinic_visits", [loose]).fast_sql is not None
    assert check("SELECT count(*) FROM clinic_visits", [GrantedTable(
        "clinic_visits", files.visits, "aggregate", entity_column="person_id")]).fast_sql is None


def test_rows_per_entity_is_computed_once_per_version(tmp_path: Path, files: Files) -> None:
    sha = "ab" * 32
    path = object_path(tmp_path, sha)
    path.parent.mkdir(parents=True)
    path.write_bytes(files.visits.read_bytes())
    assert max_rows_per_entity(tmp_path, sha, "person_id") == 3
    assert max_rows_per_entity(tmp_path, sha, "region") == 60  # north
    path.write_bytes(b"")  # the figure is kept beside the immutable file, not recomputed
    assert max_rows_per_entity(tmp_path, sha, "person_id") == 3
    nulls = "cd" * 32
    holey = object_path(tmp_path, nulls)
    holey.parent.mkdir(parents=True)
    with duckdb.connect(":memory:") as conn:
        conn.execute(f"COPY (SELECT CASE WHEN i % 4 = 0 THEN NULL ELSE i % 7 END AS who FROM range(100) t(i)) "
                     f"TO '{holey}' (FORMAT parquet)")
    assert max_rows_per_entity(tmp_path, nulls, "who") == 0  # rows without an entity: no bound
