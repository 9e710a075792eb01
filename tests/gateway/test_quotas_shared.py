"""Rate limits hold across server processes: two workers on the database counters, and on Redis."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from sovstack.core.context import unit_of_work
from sovstack.core.settings import Settings
from sovstack.gateway import service
from sovstack.gateway.metering import RedisCounters
from sovstack.gateway.schemas import KeyPolicySet
from sovstack.gateway.tables import Counter, Usage
from tests.conftest import start_server, stop_server
from tests.gateway.conftest import OPERATOR, Gateway, deployment, fresh_minute, register
from tests.gateway.upstream import Upstream

REDIS_URL = "redis://127.0.0.1:6379/15"


def _limit(gw: Gateway, rpm: int) -> None:
    with gw.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_key_policy(s, OPERATOR, gw.key.split("_")[0], KeyPolicySet(requests_per_minute=rpm))


def _burst(url: str, key: str, n: int) -> list[int]:
    def one(_: int) -> int:
        return httpx.post(f"{url}/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}"},
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(n)))


def _burst_two_workers(gw: Gateway, settings: Settings, rpm: int, n: int) -> list[int]:
    """n requests against `sovstack serve --workers 2` with a per-minute limit of rpm, in one fresh minute."""
    _limit(gw, rpm)
    srv = start_server(settings, workers=2)
    try:
        fresh_minute(margin=20)  # 240 calls on a loaded machine can take several seconds
        return _burst(srv.url, gw.key, n)
    finally:
        stop_server(srv)


def _held_write_lock_leaves_the_loop_free(gw: Gateway, settings: Settings) -> None:
    """Hold SQLite's write lock as another process would; one call must wait for it in a thread while
    the event loop keeps answering, and answer once the lock is free."""
    locker = sqlite3.connect(settings.home / "sovstack.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_burst, gw.url, gw.key, 1)
            time.sleep(0.3)
            started = time.perf_counter()
            assert httpx.get(f"{gw.url}/healthz", timeout=5).status_code == 200
            assert time.perf_counter() - started < 0.2, "the event loop waited for the lock"
            assert not pending.done(), "answered before its writes were committed"
            locker.execute("COMMIT")
            assert pending.result(timeout=20) == [200]
    finally:
        locker.close()


@pytest.mark.server
def test_rate_limit_is_shared_by_two_workers(gateway: Gateway, settings: Settings,
                                            upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    codes = _burst_two_workers(gateway, settings, 6, 10)
    assert sorted(codes) == [200] * 6 + [429] * 4


def test_redis_counters_when_configured(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    gateway.app.state.gateway.counters = RedisCounters(client)
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    _limit(gateway, 3)
    fresh_minute()
    codes = _burst(gateway.url, gateway.key, 5)
    assert sorted(codes) == [200] * 3 + [429] * 2
    keys = [k.decode() for k in client.keys("sovstack:rpm:*")]
    assert len(keys) == 1 and int(client.get(keys[0]) or 0) == 5 and 0 < client.ttl(keys[0]) <= 120
    client.flushdb()


@pytest.mark.server
def test_leased_rate_limit_never_exceeds_the_limit_across_workers(gateway: Gateway, settings: Settings,
                                                                  upstreams: Callable[..., Upstream]) -> None:
    # 200 per minute: each process claims blocks of 4 from the shared counter instead of writing per request.
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    codes = _burst_two_workers(gateway, settings, 200, 240)
    ok = codes.count(200)
    assert codes.count(200) + codes.count(429) == 240
    assert 200 - 4 <= ok <= 200, ok  # never over; early by at most one unused block of the other process
    with gateway.db.session() as s:
        claims = s.scalar(select(Counter.count).where(Counter.name.like("rpm:%")))
    assert claims is not None and claims >= ok


def test_a_held_sqlite_write_lock_moves_admission_to_a_thread_not_the_loop(
        gateway: Gateway, settings: Settings, upstreams: Callable[..., Upstream]) -> None:
    if gateway.db.dialect != "sqlite":
        pytest.skip("the event-loop admission path is SQLite's; PostgreSQL always admits in a worker thread")
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    _limit(gateway, 5)  # under 50: every request claims from the shared counter, a write
    fresh_minute()
    _held_write_lock_leaves_the_loop_free(gateway, settings)


def test_a_held_sqlite_write_lock_moves_metering_to_a_thread_not_the_loop(
        gateway: Gateway, settings: Settings, upstreams: Callable[..., Upstream]) -> None:
    if gateway.db.dialect != "sqlite":
        pytest.skip("the event-loop metering path is SQLite's; PostgreSQL always writes in a worker thread")
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    assert _burst(gateway.url, gateway.key, 1) == [200]  # the key's last-use stamp is written now, not below
    _held_write_lock_leaves_the_loop_free(gateway, settings)
    with gateway.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Usage)) == 2


def test_gateway_calls_survive_the_database_dropping_pooled_connections(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    if gateway.db.dialect != "postgresql":
        pytest.skip("dropping the server side of pooled connections is a PostgreSQL scenario")
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    assert _burst(gateway.url, gateway.key, 4) == [200] * 4  # the pool now holds live connections
    outsider = create_engine(gateway.db.engine.url, poolclass=NullPool)  # not one of the pool's connections
    with outsider.connect() as conn:
        dropped = conn.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").scalar()
    outsider.dispose()
    assert dropped
    assert _burst(gateway.url, gateway.key, 4) == [200] * 4
