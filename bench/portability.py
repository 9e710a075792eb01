"""Benchmark of portability: whole-deployment export and import, beside the databases' own dumps.

    python bench/portability.py [--quick] [--events N] [--usage N] [--object-mb N]

Builds a SQLite deployment in a temporary folder with N audit events (a valid chain; default
1,000,000), gateway usage rows (200,000) and dataset objects of random bytes (1 GB), then times
`export` and `import` (into a new SQLite deployment) and samples the process's resident memory. The
reference is `sqlite3 .dump` of the same database and its reload. With ``SOVSTACK_DATABASE_URL``
set, the bag is also imported into that PostgreSQL database — whose ``public`` schema it DROPS and
recreates first (a scratch database only) — beside `pg_dump` of the result.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test suite's fast filler
from tests.portability.bulk import fill  # noqa: E402

from sovstack.core.base import Base  # noqa: E402
from sovstack.core.db import Database  # noqa: E402
from sovstack.core.plugins import plugin_manager  # noqa: E402
from sovstack.core.settings import Settings  # noqa: E402
from sovstack.portability import service  # noqa: E402

GOAL_OBJECTS_MBS = 200.0
GOAL_EXPORT_ROWS = 100_000.0
GOAL_IMPORT_ROWS = 50_000.0
GOAL_RSS_MB = 300.0
OBJECT_FILE_MB = 100


class Phases:
    """Progress that records when each task (tables, objects, verify, load) starts; times the gaps."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []

    def task(self, description: str, total: float | None) -> Callable[[float], None]:
        self.starts.append((description, time.perf_counter()))
        return lambda _n: None

    def seconds(self, end: float) -> dict[str, float]:
        marks = [*self.starts, ("end", end)]
        return {name: marks[i + 1][1] - at for i, (name, at) in enumerate(marks[:-1])}


class Resident:
    """The highest resident memory of this process while the block ran (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.highest = 0

    def now(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    @contextmanager
    def watch(self) -> Iterator[None]:
        self.highest, running = self.now(), [True]

        def sample() -> None:
            while running[0]:
                self.highest = max(self.highest, self.now())
                time.sleep(0.005)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            running[0] = False
            thread.join()


def sqlite_settings(home: Path, secret: str) -> Settings:
    return Settings(home=home, environment="test", secret_key=secret, database_url=f"sqlite:///{home}/sovstack.db")


def objects(home: Path, megabytes: int) -> int:
    """Random files of OBJECT_FILE_MB (the last smaller) in the object store, named by their SHA-256."""
    import hashlib

    left, written = megabytes, 0
    while left > 0:
        size = min(OBJECT_FILE_MB, left) << 20
        data = os.urandom(size)
        sha = hashlib.sha256(data).hexdigest()
        path = home / "objects" / "data" / sha[:2] / f"{sha}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        left, written = left - OBJECT_FILE_MB, written + size
    return written


def line(label: str, value: float, unit: str, goal: float | None = None, lower_is_better: bool = False,
         reference: str = "") -> None:
    text_ = f"  {label:<44} {value:>12,.0f} {unit:<7}"
    if goal is not None:
        ratio = goal / value if lower_is_better else value / goal
        text_ += f" goal {goal:>9,.0f}  ratio {ratio:5.2f}"
    print(text_ + (f"   {reference}" if reference else ""), flush=True)


def timed(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, shell=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 events, 20,000 usage rows, 200 MB")
    parser.add_argument("--events", type=int)
    parser.add_argument("--usage", type=int)
    parser.add_argument("--object-mb", type=int)
    args = parser.parse_args()
    events = args.events or (100_000 if args.quick else 1_000_000)
    usage = args.usage or (20_000 if args.quick else 200_000)
    megabytes = args.object_mb or (200 if args.quick else 1024)
    pg_url = os.environ.get("SOVSTACK_DATABASE_URL", "")
    print(f"sovstack portability bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    hooks = plugin_manager()
    memory = Resident()
    with tempfile.TemporaryDirectory(prefix="sovstack-bench-portability-") as tmp:
        root = Path(tmp)
        source = Database(sqlite_settings(root / "source", "bench-source-secret"))
        source.upgrade()
        fill(source, events=events, usage=usage)
        object_bytes = objects(root / "source", megabytes)
        rows = events + usage
        print(f"deployment: {events:,} audit events, {usage:,} gateway usage rows, {object_bytes / 2**20:,.0f} MB "
              "of objects, SQLite")
        baseline = memory.now()

        phases = Phases()
        with memory.watch():
            service.export_deployment(source, Base.metadata, root / "bag", progress=phases)
        export = phases.seconds(time.perf_counter())
        export_rss = memory.highest
        db_file = root / "source" / "sovstack.db"
        dump_s = timed(f"sqlite3 {db_file} .dump > {root / 'dump.sql'}")
        print("export")
        line("tables", rows / export["tables"], "rows/s", GOAL_EXPORT_ROWS,
             reference=f"sqlite3 .dump {rows / dump_s:,.0f} rows/s (ratio {dump_s / export['tables']:.2f})")
        line("objects (copy + SHA-256)", object_bytes / 2**20 / export["objects"], "MB/s", GOAL_OBJECTS_MBS)

        target = Database(sqlite_settings(root / "target", "bench-target-secret"))
        target.upgrade()
        phases = Phases()
        with memory.watch():
            service.import_deployment(target, Base.metadata, root / "bag", hooks=hooks, progress=phases)
        loaded = phases.seconds(time.perf_counter())
        import_rss = memory.highest
        reload_s = timed(f"sqlite3 {root / 'reload.db'} < {root / 'dump.sql'}")
        tables_s = loaded["verify"] + loaded["load"]
        print("import into SQLite")
        line("tables (verify + load, one transaction)", rows / tables_s, "rows/s", GOAL_IMPORT_ROWS,
             reference=f"sqlite3 < dump {rows / reload_s:,.0f} rows/s (ratio {reload_s / tables_s:.2f})")
        line("  of which load", rows / loaded["load"], "rows/s")
        line("objects (copy + SHA-256 check)", object_bytes / 2**20 / loaded["objects"], "MB/s", GOAL_OBJECTS_MBS)
        print("memory")
        line("peak resident, export", export_rss / 2**20, "MB", GOAL_RSS_MB, lower_is_better=True,
             reference=f"(process at start {baseline / 2**20:,.0f} MB)")
        line("peak resident, import", import_rss / 2**20, "MB", GOAL_RSS_MB, lower_is_better=True)
        target.dispose()

        if pg_url:
            settings = Settings(home=root / "pg", environment="test", secret_key="bench-pg-secret",
                                database_url=pg_url)
            pg = Database(settings)
            with pg.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            pg.upgrade()
            phases = Phases()
            service.import_deployment(pg, Base.metadata, root / "bag", hooks=hooks, progress=phases)
            loaded = phases.seconds(time.perf_counter())
            plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
            pg_dump_s = timed(f"pg_dump '{plain}' > {root / 'pg.sql'}")
            phases = Phases()
            service.export_deployment(pg, Base.metadata, root / "pg-bag", progress=phases)
            exported = phases.seconds(time.perf_counter())
            print("PostgreSQL")
            line("import tables (verify + load)", rows / (loaded["verify"] + loaded["load"]), "rows/s")
            line("export tables", rows / exported["tables"], "rows/s",
                 reference=f"pg_dump {rows / pg_dump_s:,.0f} rows/s (ratio {pg_dump_s / exported['tables']:.2f})")
            pg.dispose()
        source.dispose()


if __name__ == "__main__":
    main()
