"""Failover across deployments, circuits, mid-stream failures, and upstream faults — with real servers."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select

from sovstack.gateway import routing
from sovstack.gateway.tables import Usage
from tests.conftest import free_port
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.upstream import Upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def post(gw: Gateway, body: dict[str, object] = CHAT, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {gw.key}", **headers})


@pytest.mark.parametrize("mode", ["500", "429", "stall", "garbage", "refused"])
def test_fails_over_to_the_next_deployment(gateway: Gateway, upstreams: Callable[..., Upstream], mode: str) -> None:
    bad_url = f"http://127.0.0.1:{free_port()}/v1" if mode == "refused" else upstreams("bad", mode).url
    good = upstreams("good")
    register(gateway.db, "m", deployment("first", bad_url, priority=1, timeout_seconds=0.5),
             deployment("second", good.url, priority=2))
    started = time.monotonic()
    r = post(gateway)
    assert r.status_code == 200, r.text
    assert r.headers["x-sovstack-deployment"] == "second" and r.headers["x-sovstack-tries"] == "2"
    assert r.json()["choices"][0]["message"]["content"] == "hello from good"
    assert time.monotonic() - started < 5  # a stalled upstream costs its timeout, not forever


def test_client_errors_are_not_retried(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    bad, good = upstreams("bad", "400"), upstreams("good")
    register(gateway.db, "m", deployment("first", bad.url, priority=1), deployment("second", good.url, priority=2))
    r = post(gateway)
    assert r.status_code == 400 and r.headers["x-sovstack-tries"] == "1" and good.received == []


def test_all_failing_is_a_clear_503_and_is_metered(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("a", upstreams("a", "500").url), deployment("b", upstreams("b", "500").url))
    r = post(gateway)
    assert r.status_code == 503
    err = r.json()["error"]
    assert "no deployment of m answered" in err["message"] and len(err["reasons"]) == 2
    with gateway.db.session() as s:
        assert s.scalars(select(Usage.outcome)).one() == "failed"


def test_circuit_opens_after_repeated_failures(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    bad, good = upstreams("bad", "500"), upstreams("good")
    register(gateway.db, "m", deployment("first", bad.url, priority=1), deployment("second", good.url, priority=2))
    for _ in range(routing.FAILURES_TO_OPEN):
        assert post(gateway).headers["x-sovstack-tries"] == "2"
    calls = len(bad.received)
    r = post(gateway)
    assert r.status_code == 200 and r.headers["x-sovstack-tries"] == "1"  # the open circuit is skipped
    assert len(bad.received) == calls
    states = {d["name"]: d["circuit"] for d in httpx.get(
        f"{gateway.url}/api/v1/gateway/deployments", headers={"Authorization": f"Bearer {gateway.admin_key}"}).json()}
    assert states == {"first": "open", "second": "closed"}


def test_breaker_half_opens_after_cool_down() -> None:
    breaker = routing.Breaker()
    for _ in range(routing.FAILURES_TO_OPEN):
        breaker.failed()
    assert not breaker.allows()
    assert breaker.opened_at is not None
    breaker.opened_at -= routing.COOL_DOWN_SECONDS
    assert breaker.allows() and not breaker.allows()  # one probe at a time
    breaker.succeeded()
    assert breaker.state() == "closed"


def test_stream_dropped_mid_way_ends_with_an_error_event(gateway: Gateway,
                                                         upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("dropper", upstreams("dropper", "drop").url))
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {gateway.key}"}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[0].startswith("data: ") and "part0" in lines[0]
    assert '"error"' in lines[-1] and "mid-stream" in lines[-1]
    assert "data: [DONE]" not in lines
    with gateway.db.session() as s:
        assert s.scalars(select(Usage.outcome)).one() == "interrupted"


def test_endless_stream_is_cut_in_bounded_time(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("endless", upstreams("endless", "endless").url, timeout_seconds=0.2))
    started = time.monotonic()
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {gateway.key}"}) as r:
        last = [line for line in r.iter_lines() if line][-1]
    assert time.monotonic() - started < 10 and '"error"' in last


def test_order_is_by_priority_then_weight() -> None:
    import random

    def cand(name: str, priority: int, weight: int, langs: dict[str, int] | None = None) -> routing.Candidate:
        langs = langs or {}
        return routing.Candidate(id=hash(name), name=name, base_url="", upstream_model="", api_key="", timeout=1,
                                 price_in=0, price_out=0, priority=priority, weight=weight, languages=tuple(langs),
                                 facts={}, tiers=langs)

    rng = random.Random(1)
    firsts = [routing.order([cand("a", 1, 3), cand("b", 1, 1), cand("c", 2, 100)], rng=rng)[0].name
              for _ in range(2000)]
    assert "c" not in firsts and 0.68 < firsts.count("a") / len(firsts) < 0.82
    ordered = routing.order([cand("en", 1, 1, {"en": 0}), cand("hi", 5, 1, {"hi": 0})], language="hi", rng=rng)
    assert [c.name for c in ordered] == ["hi", "en"]
    tiers = routing.order([cand("hi-low", 1, 1, {"hi": 2}), cand("hi-high", 9, 1, {"hi": 0})], language="hi", rng=rng)
    assert [c.name for c in tiers] == ["hi-high", "hi-low"]


def test_stream_abandoned_by_the_client_is_still_metered(gateway: Gateway,
                                                         upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("slow", upstreams("slow", "slow").url))
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {gateway.key}"}) as r:
        next(r.iter_lines())  # read the first event, then hang up
    deadline = time.monotonic() + 5
    outcomes: list[str] = []
    while time.monotonic() < deadline and not outcomes:
        with gateway.db.session() as s:
            outcomes = list(s.scalars(select(Usage.outcome)))
        time.sleep(0.1)
    assert outcomes == ["client_closed"]


def test_concurrent_calls_share_commits_and_lose_nothing(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sovstack.core import audit

    register(gateway.db, "m", deployment("d", upstreams("d").url))
    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(lambda _: post(gateway).status_code, range(64)))
    assert codes == [200] * 64
    with gateway.db.session() as s:
        assert len(s.scalars(select(Usage.id)).all()) == 64
        result = audit.verify(s)
    assert result.ok
