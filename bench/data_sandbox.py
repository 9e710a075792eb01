"""Benchmark of the data sandbox: one GROUP BY over a 10M-row Parquet file, sandboxed against plain DuckDB.

    python bench/data_sandbox.py [--rows N] [--runs N] [--threads N]

Writes the Parquet file with DuckDB into a temporary folder (``person_id``: 1M entities with 10 rows
each, ``region``: 8 values, ``amount``), then times, best of ``--runs`` after one warm-up:

- plain: ``SELECT region, count(*), sum(amount) ... GROUP BY region`` in an in-process
  ``duckdb.connect()`` with the same thread count as the sandbox, kept across runs (DuckDB's
  Parquet metadata and file caches warm) and new for each run (cold, as every worker is);
- the same query in full mode through ``run_query`` (lockdown only, no disclosure control);
- the same query in aggregate mode through ``run_query``: first with the per-entity pass (what runs
  when the version's rows-per-entity figure R is not known, or bounds cannot prove the rules), then
  bounded by R (what runs for a published version: R is computed once, at publication);
- for reference, in-process: plain + COUNT(DISTINCT person_id) (the k check alone);
- the same query answered with differential privacy (OpenDP over Polars, what sensitive data gets
  now): one privacy unit = one person with at most R rows, ``amount`` clamped to [0, 1000], the
  eight regions declared public; the goal for it is 1.5x of plain DuckDB;
- the airlock's output check of a ~1,000-cell table (8 regions x 63 bands of ``amount``, a count and
  a sum each; the top band holds 40 people, so some groups are withheld and secondary suppression
  runs): the exact per-entity run in the worker, then the check itself (group sizes against the
  earlier results' kept sizes, differencing in the worker against those that come close, primary and
  secondary suppression in process) after three other releases, and in the worst case after three
  releases of the same table one person apart; the goal for the check is 1 s.

"excl. start" is the time the worker reports for running and fetching its query; "incl. start"
is the caller's wall time for the whole ``run_query`` (process start, lockdown, JSON both ways).
Prints each figure and its ratio to plain; the goal is 1.2x (start excluded).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from sovstack.data import outputcheck, private
from sovstack.data.engine import Limits, execute, execute_private
from sovstack.data.sandbox import GrantedTable, check, run_exact, run_query

GOAL_RATIO = 1.2
PRIVATE_GOAL_RATIO = 1.5
QUERY = "SELECT region, count(*) AS n, sum(amount) AS total FROM events GROUP BY region"
AIRLOCK_GOAL_SECONDS = 1.0
AIRLOCK = ("SELECT region, amount // 16 AS band, count(*) AS n, sum(amount) AS total FROM events "
           "WHERE amount < 992 OR person_id < 40{extra} GROUP BY region, amount // 16")
OTHER_RELEASES = ["SELECT region, count(*) AS n FROM events GROUP BY region",
                  "SELECT amount // 100 AS band, sum(amount) AS total FROM events GROUP BY amount // 100",
                  "SELECT count(*) AS n, sum(amount) AS total FROM events WHERE amount >= 500"]
K_ONLY = ("SELECT region, count(*) AS n, sum(amount) AS total, count(DISTINCT person_id) AS people "
          "FROM events GROUP BY region")


def make_parquet(path: Path, rows: int) -> None:
    entities = max(1, rows // 10)
    with duckdb.connect(":memory:") as conn:
        conn.execute(f"""COPY (SELECT (i * 7919) % {entities} AS person_id, 'r' || (i % 8) AS region,
                                      (i % 1000)::BIGINT AS amount
                               FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet)""")


def rows_per_entity(path: Path) -> int:
    """What ``ingest.max_rows_per_entity`` computes once per version and keeps beside the file."""
    with duckdb.connect(":memory:", config={"threads": 2}) as conn:
        found = conn.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM read_parquet(?) GROUP BY person_id)",
                             [str(path)]).fetchone()
    return int(found[0]) if found else 0


def best(runs: int, once: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """Best inner and wall seconds over ``runs`` calls, after one warm-up call."""
    once()
    timings = [once() for _ in range(runs)]
    return min(inner for inner, _ in timings), min(wall for _, wall in timings)


def connect(path: Path, threads: int) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(":memory:")
    conn.execute(f"SET threads = {threads}")
    conn.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{path}')")
    return conn


def plain(path: Path, sql: str, threads: int, fresh: bool = False) -> Callable[[], tuple[float, float]]:
    """The query in process; ``fresh``: on a new connection each time, with DuckDB's caches cold like a worker's."""
    kept = connect(path, threads)

    def once() -> tuple[float, float]:
        conn = connect(path, threads) if fresh else kept
        start = time.perf_counter()
        conn.execute(sql).fetchall()
        elapsed = time.perf_counter() - start
        return elapsed, elapsed
    return once


def sandboxed(table: GrantedTable, limits: Limits) -> Callable[[], tuple[float, float]]:
    def once() -> tuple[float, float]:
        start = time.perf_counter()
        result = run_query(QUERY, [table], limits)
        return result.seconds, time.perf_counter() - start
    return once


def privately(table: GrantedTable, most: int, rows: int, limits: Limits) -> Callable[[], tuple[float, float]]:
    plan = check(QUERY, [table]).plan
    assert plan is not None
    request = private.spec(plan, bounds={"amount": [0, 1000]}, keys={"region": [f"r{i}" for i in range(8)]},
                           max_rows_per_entity=most, max_length=rows, epsilon=1.0)

    def once() -> tuple[float, float]:
        start = time.perf_counter()
        reply = execute_private(request, table.path, limits)
        return float(reply["seconds"]), time.perf_counter() - start
    return once


def airlock(table: GrantedTable, limits: Limits, runs: int, earlier_sql: list[str]) -> tuple[float, float, float, int]:
    """The held run, the output check as the airlock makes it (sizes first, then differencing in the worker
    only against earlier results with a group close in size, then suppression in process), the cells."""
    checked = check(AIRLOCK.format(extra=""), [table])
    assert checked.plan is not None
    wide = Limits(memory_mb=limits.memory_mb, threads=limits.threads, seconds=limits.seconds, max_rows=10_000)
    earlier = []
    for i, sql in enumerate(earlier_sql, start=1):  # as the earlier releases' checks keep them
        other = check(sql, [table])
        ran = run_exact(other, [table], limits=wide)
        earlier.append((i, other.plan, [int(row[ran.columns.index("__entities")]) for row in ran.rows]))
    held_runs, checks, in_process = [], [], []
    cells = 0
    for _ in range(runs + 1):
        ran = run_exact(checked, [table], limits=wide)
        held_runs.append(ran.seconds)
        started = time.perf_counter()
        sizes = [int(row[ran.columns.index("__entities")]) for row in ran.rows]
        close = [(i, plan) for i, plan, theirs in earlier if outputcheck.sizes_within(sizes, theirs, table.k)]
        overlaps = []
        if close:
            found = run_exact(checked, [table], outputcheck.overlap_sql(checked.plan, close), limits=wide)
            overlaps = outputcheck.overlaps_of(found.rows)
        local = time.perf_counter()
        check_result, _ = outputcheck.assess(checked.plan, ran.columns, ran.rows, overlaps)
        checks.append(time.perf_counter() - started)
        in_process.append(time.perf_counter() - local)
        cells = check_result.summary()["cells"] - 2 * len(ran.rows)  # the value cells, keys left out
    return min(held_runs[1:]), min(checks[1:]), min(in_process[1:]), cells


def start_up(limits: Limits, runs: int) -> float:
    walls = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        execute("SELECT 1", {}, limits)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls[1:])


def line(label: str, seconds: float, baseline: float | None = None) -> None:
    ratio = f"   {seconds / baseline:6.2f}x plain" if baseline else ""
    print(f"  {label:<52} {seconds * 1000:9.1f} ms{ratio}", flush=True)


def run(rows: int, runs: int, threads: int, memory_mb: int) -> None:
    """Print plain DuckDB against the sandbox, full and aggregate mode, with and without process start."""
    limits = Limits(memory_mb=memory_mb, threads=threads, seconds=120)
    with tempfile.TemporaryDirectory(prefix="sovstack-bench-") as folder:
        path = Path(folder) / "events.parquet"
        started = time.perf_counter()
        make_parquet(path, rows)
        print(f"sandbox: {rows:,} rows, {path.stat().st_size / 1e6:.0f} MB Parquet, written in "
              f"{time.perf_counter() - started:.1f} s; threads {threads}, best of {runs}", flush=True)
        base, _ = best(runs, plain(path, QUERY, threads))
        line("plain DuckDB, in process", base)
        cold, _ = best(runs, plain(path, QUERY, threads, fresh=True))
        line("plain DuckDB, in process, new connection each run", cold, base)
        k_only, _ = best(runs, plain(path, K_ONLY, threads))
        line("plain + COUNT(DISTINCT person_id), in process", k_only, base)
        full = GrantedTable("events", path, "full")
        inner, wall = best(runs, sandboxed(full, limits))
        line("sandbox, full mode, excl. start", inner, base)
        line("sandbox, full mode, incl. start", wall, base)
        aggregate = GrantedTable("events", path, "aggregate", entity_column="person_id")
        inner, wall = best(runs, sandboxed(aggregate, limits))
        line("sandbox, aggregate, per-entity pass, excl. start", inner, base)
        line("sandbox, aggregate, per-entity pass, incl. start", wall, base)
        started = time.perf_counter()
        most = rows_per_entity(path)
        line(f"rows per entity (R = {most}), once per version", time.perf_counter() - started)
        bounded = GrantedTable("events", path, "aggregate", entity_column="person_id", max_rows_per_entity=most)
        inner, wall = best(runs, sandboxed(bounded, limits))
        line("sandbox, aggregate, bounded by R, excl. start", inner, base)
        line("sandbox, aggregate, bounded by R, incl. start", wall, base)
        inner, wall = best(runs, privately(bounded, most, rows, limits))
        line("sandbox, differentially private (OpenDP), excl. start", inner, base)
        line("sandbox, differentially private (OpenDP), incl. start", wall, base)
        held, checked, in_process, cells = airlock(bounded, limits, runs, OTHER_RELEASES)
        line(f"airlock: exact per-entity run, {cells:,} cells, excl. start", held, base)
        line("airlock: output check after 3 other releases", checked)
        line("airlock: output check, suppression part", in_process)
        _, attacked, _, _ = airlock(bounded, limits, runs, [AIRLOCK.format(extra=f" AND person_id <> {i}")
                                                            for i in range(1, 4)])
        line("airlock: output check after 3 one-person-apart (worst case)", attacked)
        line("worker start-up (SELECT 1, median)", start_up(limits, runs))
        print(f"  goals: within {GOAL_RATIO}x of plain DuckDB (aggregate, bounded), {PRIVATE_GOAL_RATIO}x "
              f"(differentially private), start excluded; airlock check within {AIRLOCK_GOAL_SECONDS:g} s",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-mb", type=int, default=1024)
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"sovstack data sandbox bench — {stamp}, {platform.node()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, DuckDB {duckdb.__version__}", flush=True)
    run(args.rows, args.runs, args.threads, args.memory_mb)


if __name__ == "__main__":
    main()
