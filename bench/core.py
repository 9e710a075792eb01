"""Benchmark of the core: audit appends, audit verification, authenticated API requests.

    python bench/core.py [--quick]

Runs on a fresh SQLite deployment in a temporary folder, or, when ``SOVSTACK_DATABASE_URL``
is set, on that PostgreSQL database — whose ``public`` schema it DROPS and recreates first.
Prints each figure and its ratio against the goal (>= 1.0 means the goal is met).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from sovstack.core import audit, identity
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import ApiKeyCreate, UserCreate
from sovstack.core.settings import Settings

SECRET = "bench-secret-key-not-for-production"
OPERATOR = Principal.system("bench")
GOAL_APPEND_PER_S = 5_000
GOAL_VERIFY_PER_S = 200_000
CLIENT_PROCESSES = 4
SERVER_WORKERS = 2


@dataclass(frozen=True)
class Sizes:
    single: int          # events appended one per transaction
    batched: int         # events appended in transactions of BATCH
    chain: int           # events in the chain that verify walks
    load_seconds: float  # duration of each HTTP load run


FULL = Sizes(single=5_000, batched=50_000, chain=200_000, load_seconds=10.0)
QUICK = Sizes(single=500, batched=5_000, chain=20_000, load_seconds=3.0)
BATCH = 100


def line(label: str, value: float, unit: str, goal: float | None = None) -> None:
    ratio = f"   goal {goal:>9,.0f}  ratio {value / goal:5.2f}" if goal else ""
    print(f"  {label:<44} {value:>11,.0f} {unit:<6}{ratio}", flush=True)


# The deployment -----------------------------------------------------------------------------------

def fresh_deployment(home: Path) -> tuple[Settings, Database]:
    """A migrated, empty deployment in ``home`` (PostgreSQL: the public schema is wiped first)."""
    home.mkdir(parents=True, exist_ok=True)  # holds the server log, whatever the database
    settings = Settings(home=home, environment="test", secret_key=SECRET)
    db = Database(settings)
    if not settings.is_sqlite:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    db.upgrade()
    return settings, db


def append(db: Database, count: int, per_transaction: int) -> float:
    """Append ``count`` events, committing every ``per_transaction``; return events per second."""
    detail = {"bench": True, "size": 42, "note": "a typical small detail object"}
    start = time.perf_counter()
    done = 0
    with db.session() as session:
        while done < count:
            for _ in range(min(per_transaction, count - done)):
                audit.record(session, actor="bench@example.org (sk-bench)", action="bench.append",
                             target=f"thing:{done}", detail=detail)
                done += 1
            session.commit()
    return count / (time.perf_counter() - start)


def verify_rate(db: Database) -> tuple[float, int]:
    with db.session() as session:
        start = time.perf_counter()
        result = audit.verify(session)
        elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"audit chain broken in the bench: {result.problem}")
    return result.checked / elapsed, result.checked


def bench_audit(db: Database, sizes: Sizes) -> None:
    print(f"audit on {db.dialect}", flush=True)
    line("append, 1 event per transaction", append(db, sizes.single, 1), "ev/s", GOAL_APPEND_PER_S)
    batched = append(db, sizes.batched, BATCH)
    line(f"append, {BATCH} events per transaction", batched, "ev/s", GOAL_APPEND_PER_S)
    with db.session() as session:
        have = int(session.execute(text("SELECT count(*) FROM audit_events")).scalar_one())
    if have < sizes.chain:
        append(db, sizes.chain - have, 1000)
    rate, checked = verify_rate(db)
    line(f"verify ({checked:,} events)", rate, "ev/s", GOAL_VERIFY_PER_S)


# The server and its load ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(settings: Settings, workers: int) -> Iterator[tuple[str, int]]:
    """`sovstack serve --workers N` on 127.0.0.1 (url, supervisor pid); stopped on the way out, whatever happens."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVSTACK_")}
    env.update(SOVSTACK_HOME=str(settings.home), SOVSTACK_SECRET_KEY=SECRET, SOVSTACK_ENVIRONMENT="test",
               SOVSTACK_DATABASE_URL=settings.database_url, SOVSTACK_LOG_LEVEL="warning")
    log = settings.home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sovstack", "serve", "--port", str(port), "--workers", str(workers)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server did not become ready:\n{log.read_text()[-2000:]}")


def admin_key(db: Database) -> str:
    """An admin user and a read/write/admin key, made through the service layer."""
    with db.session() as s, unit_of_work(s, OPERATOR):
        user = identity.create_user(s, OPERATOR, UserCreate(email="bench@example.org", name="bench",
                                                            password="bench password 1234", is_admin=True))
    with db.session() as s, unit_of_work(s, OPERATOR):
        _key, secret = identity.create_api_key(
            s, OPERATOR, ApiKeyCreate(name="bench", scopes=["read", "write", "admin"], user_id=user.id))
    return secret


@dataclass(frozen=True)
class ClientRun:
    latencies: list[float]
    errors: int
    began: float  # time.time(), comparable across processes
    ended: float


def client_loop(args: tuple[str, str | None, float, int]) -> ClientRun:
    """One client process: keep-alive requests until the deadline or the bound."""
    url, key, seconds, bound = args
    headers = {"authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    errors = 0
    with httpx.Client(headers=headers, timeout=10) as client:
        began = time.time()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline and len(latencies) + errors < bound:
            start = time.perf_counter()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
    return ClientRun(latencies, errors, began, time.time())


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def load(url: str, key: str | None, seconds: float) -> Load:
    client_loop((url, key, 0.5, 200))  # warm the workers up
    jobs = [(url, key, seconds, 1_000_000)] * CLIENT_PROCESSES
    with multiprocessing.get_context("spawn").Pool(CLIENT_PROCESSES) as pool:
        runs = pool.map(client_loop, jobs)
    latencies = sorted(lat for run in runs for lat in run.latencies)
    errors = sum(run.errors for run in runs)
    if len(latencies) < 2:
        return Load(0.0, 0.0, 0.0, errors)
    # From the first client's start to the last one's end: process start-up is not counted.
    wall = max(run.ended for run in runs) - min(run.began for run in runs)
    quantiles = statistics.quantiles(latencies, n=100)
    return Load(len(latencies) / wall, quantiles[49] * 1000, quantiles[98] * 1000, errors)


def bench_http(settings: Settings, db: Database, sizes: Sizes) -> None:
    key = admin_key(db)
    print(f"HTTP, {SERVER_WORKERS} server workers, {CLIENT_PROCESSES} client processes, "
          f"{sizes.load_seconds:.0f} s each, database {db.dialect}", flush=True)
    with running_server(settings, SERVER_WORKERS) as (url, _):
        health = load(f"{url}/healthz", None, sizes.load_seconds)
        me = load(f"{url}/api/v1/me", key, sizes.load_seconds)
    for name, result in (("GET /healthz (no auth, no DB)", health), ("GET /api/v1/me (Bearer key)", me)):
        print(f"  {name:<44} {result.rps:>11,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
              f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}", flush=True)
    overhead = me.rps / health.rps if health.rps else 0.0
    print(f"  {'auth overhead (me rps / healthz rps)':<44} {overhead:>11.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes and short loads (a smoke run).")
    parser.add_argument("--only", choices=("audit", "http"), help="Run one part only.")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    print(f"sovstack core bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}{' (quick)' if args.quick else ''}")
    with tempfile.TemporaryDirectory(prefix="sovstack-bench-") as tmp:
        settings, db = fresh_deployment(Path(tmp) / "home")
        try:
            if args.only != "http":
                bench_audit(db, sizes)
            if args.only != "audit":
                bench_http(settings, db, sizes)
        finally:
            db.dispose()


if __name__ == "__main__":
    main()
