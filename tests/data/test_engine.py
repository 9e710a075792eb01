"""The worker's lockdown on its own: user SQL run straight in the worker, with the checker bypassed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sovstack.core.errors import BadInput, Refused, Unavailable
from sovstack.data import engine
from sovstack.data.engine import LimitExceeded, Limits, execute

from .conftest import SECRET_TEXT, Files


def run(sql: str, files: Files, **limits: float) -> engine.EngineResult:
    return execute(sql, {"visits": files.visits}, Limits(**limits))  # type: ignore[arg-type]


def refused(sql: str, files: Files) -> Refused:
    with pytest.raises(Refused) as caught:
        run(sql, files)
    return caught.value


def test_the_granted_view_reads(files: Files) -> None:
    result = run("SELECT region, count(*) AS n FROM visits GROUP BY region ORDER BY region", files)
    assert result.columns == ["region", "n"]
    assert result.rows == [["east", 11], ["north", 60], ["south", 19], ["west", 30]]
    assert not result.truncated and result.seconds > 0


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_blob('~/.bashrc')",
])
def test_files_outside_the_grant_cannot_be_read(sql: str, files: Files) -> None:
    with pytest.raises((Refused, BadInput)) as caught:
        run(sql, files)
    assert "root:" not in caught.value.line()


def test_another_parquet_file_cannot_be_read(files: Files) -> None:
    error = refused(f"SELECT * FROM read_parquet('{files.secret}')", files)
    assert SECRET_TEXT not in error.line()
    assert "file system operations are disabled" in error.reasons[0]


def test_the_configuration_is_locked(files: Files) -> None:
    for sql in ["SET enable_external_access = true", "SET lock_configuration = false", "RESET enable_external_access",
                "SET memory_limit = '10GB'", "PRAGMA memory_limit = '10GB'", "SET allowed_paths = ['/etc/passwd']"]:
        assert "configuration has been locked" in refused(sql, files).reasons[0], sql
    # In one session too: the SET fails, so the read after it never runs.
    error = refused("SET enable_external_access = true; SELECT * FROM read_csv('/etc/passwd')", files)
    assert "root:" not in error.line()


def test_nothing_is_written_attached_or_installed(files: Files, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    refused(f"COPY (SELECT * FROM visits) TO '{target}'", files)
    refused(f"ATTACH '{tmp_path / 'x.db'}' AS x", files)
    refused(f"EXPORT DATABASE '{tmp_path / 'export'}'", files)
    refused("INSTALL httpfs", files)
    refused("LOAD httpfs", files)
    assert list(tmp_path.iterdir()) == []


def test_the_worker_has_an_empty_home(files: Files) -> None:
    home = run("SELECT current_setting('home_directory')", files).rows[0][0]
    assert "sovstack-sandbox-" in home and not Path(home).exists()  # removed with the worker's folder


def test_a_duckdb_error_is_one_clean_line(files: Files) -> None:
    with pytest.raises(BadInput) as caught:
        run("SELECT no_such_column FROM visits", files)
    message = caught.value.message
    assert message.startswith("Binder Error: Referenced column \"no_such_column\" not found")
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.field == "sql"


def test_rows_are_capped(files: Files) -> None:
    result = run("SELECT person_id FROM visits ORDER BY person_id", files, max_rows=5)
    assert result.rows == [[0], [1], [1], [2], [2]] and result.truncated


def test_values_come_back_as_plain_json(files: Files) -> None:
    result = run("SELECT DATE '2024-01-02' AS d, 1.50::DECIMAL(4, 2) AS m, 'ab'::BLOB AS b, "
                 "170141183460469231731687303715884105727::HUGEINT AS h, INTERVAL 1 DAY AS i, [1, 2] AS l", files)
    assert result.rows == [["2024-01-02", 1.5, "YWI=", "170141183460469231731687303715884105727", "1 day, 0:00:00",
                            [1, 2]]]


def test_duckdb_stops_a_runaway_query_at_the_time_limit(files: Files) -> None:
    started = time.monotonic()
    with pytest.raises(LimitExceeded, match="ran longer than 1 s and was stopped"):
        run("SELECT count(*) FROM visits a, visits b, visits c, visits d, visits e", files, seconds=1)
    assert time.monotonic() - started < 1 + engine.GRACE_SECONDS


def test_the_parent_kills_a_worker_that_does_not_stop(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "GRACE_SECONDS", -0.95)  # the parent gives up before DuckDB's own limit
    started = time.monotonic()
    with pytest.raises(LimitExceeded, match="ran longer than 1 s and was stopped"):
        run("SELECT count(*) FROM visits a, visits b, visits c, visits d, visits e", files, seconds=1)
    assert time.monotonic() - started < 1


def test_memory_is_capped(files: Files) -> None:
    with pytest.raises(LimitExceeded, match="more than 64 MB of memory"):
        run("SELECT list(repeat('x', 1000) || i) FROM range(1000000) t(i)", files, memory_mb=64)


def test_a_missing_data_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="data file of table gone is missing"):
        execute("SELECT 1", {"gone": tmp_path / "gone.parquet"}, Limits())


def test_table_names_are_checked(files: Files) -> None:
    with pytest.raises(BadInput, match="not a table name"):
        execute("SELECT 1", {'x" AS SELECT 1; --': files.visits}, Limits())


def test_limits_are_checked() -> None:
    with pytest.raises(BadInput):
        Limits(seconds=0)
    with pytest.raises(BadInput):
        Limits(max_rows=0)
