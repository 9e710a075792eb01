"""Failover across deployments, circuits, mid-stream failures, and upstream faults — with real servers."""

from __future__ import annotations

import json
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


def test_a_transient_failure_is_retried_on_the_same_deployment_before_failing_over(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    flaky, spare = upstreams("flaky", "flaky"), upstreams("spare")
    register(gateway.db, "m", deployment("flaky", flaky.url, priority=1, retries=2),
             deployment("spare", spare.url, priority=2))
    r = post(gateway)
    assert r.status_code == 200 and r.headers["x-sovstack-deployment"] == "flaky"
    assert r.headers["x-sovstack-tries"] == "3" and spare.received == []
    flaky.failures_left = 5  # more than its retries: bounded, then the next deployment
    r = post(gateway)
    assert r.headers["x-sovstack-deployment"] == "spare" and len(flaky.received) == 3 + 3


def test_a_client_error_is_not_retried_even_with_retries(gateway: Gateway,
                                                         upstreams: Callable[..., Upstream]) -> None:
    bad = upstreams("bad", "400")
    register(gateway.db, "m", deployment("bad", bad.url, retries=3))
    assert post(gateway).status_code == 400 and len(bad.received) == 1


def test_a_declared_fallback_model_answers_when_every_deployment_failed_and_says_so(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    from sovstack.core import audit as core_audit
    from sovstack.core.tables import AuditEvent

    register(gateway.db, "small", deployment("small-1", upstreams("small").url))
    register_fallback(gateway, "big", ["small"], deployment("big-1", upstreams("big", "500").url))
    r = post(gateway, {**CHAT, "model": "big"})
    assert r.status_code == 200, r.text
    assert r.headers["x-sovstack-fallback"] == "small" and r.headers["x-sovstack-deployment"] == "small-1"
    assert r.json()["model"] == "small"  # the answer says which model wrote it
    with gateway.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.chat")).all()[-1]
        detail = json.loads(event.detail)
        assert detail["fallback"] == "small" and detail["tried"] == ["big-1", "small-1"]
        assert core_audit.verify(s).ok


def test_a_fallback_model_is_held_to_the_same_policy(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    # The fallback is hosted abroad: a sensitive request may not go there, even when the first model fails.
    register(gateway.db, "abroad", deployment("abroad-1", upstreams("abroad").url, hosting_jurisdiction="US"))
    register_fallback(gateway, "home", ["abroad"], deployment("home-1", upstreams("home", "500").url))
    r = post(gateway, {**CHAT, "model": "home"}, **{"x-sovstack-classification": "sensitive"})
    assert r.status_code == 503 and r.json()["error"]["reasons"] == ["home-1: HTTP 500"]
    assert post(gateway, {**CHAT, "model": "home"}).headers["x-sovstack-fallback"] == "abroad"


def test_an_unknown_or_own_fallback_is_refused(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.admin_key}"}
    for fallbacks, reason in ((["ghost"], "unknown fallback"), (["self"], "its own fallback")):
        r = httpx.post(f"{gateway.url}/api/v1/gateway/apply", headers=headers, timeout=10,
                       json={"models": [{"name": "self", "fallbacks": fallbacks}]})
        assert r.status_code == 422 and reason in r.json()["error"]["message"]


def test_per_deployment_circuit_settings(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("touchy", upstreams("touchy", "500").url, priority=1, failures_to_open=1),
             deployment("spare", upstreams("spare").url, priority=2))
    assert post(gateway).headers["x-sovstack-tries"] == "2"
    assert post(gateway).headers["x-sovstack-tries"] == "1"  # one failure opened it


def test_least_busy_and_latency_strategies_order_equal_priorities() -> None:
    def cand(i: int, priority: int = 1) -> routing.Candidate:
        return routing.Candidate(id=i, name=f"d{i}", base_url="", upstream_model="", api_key="", timeout=1,
                                 price_in=0, price_out=0, priority=priority, weight=1, languages=(), facts={})

    health = routing.Breakers()
    health.of(1).in_flight, health.of(2).in_flight, health.of(3).in_flight = 5, 1, 0
    ordered = routing.order([cand(1), cand(2), cand(3, priority=2)], strategy="least-busy", health=health)
    assert [c.id for c in ordered] == [2, 1, 3]  # the least busy first, within its priority only
    health.of(1).observe(50.0)
    health.of(2).observe(10.0)
    health.of(2).observe(400.0)  # an exponentially weighted mean: one slow answer moves it, not all the way
    assert health.of(2).latency_ms == pytest.approx(88.0)
    assert [c.id for c in routing.order([cand(2), cand(1)], strategy="latency", health=health)] == [1, 2]
    assert [c.id for c in routing.order([cand(2), cand(1), cand(4)], strategy="latency", health=health)][0] == 4


def test_least_busy_spreads_concurrent_streams(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    a, b = upstreams("a", "slow"), upstreams("b", "slow")
    register_fallback(gateway, "m", [], deployment("a", a.url), deployment("b", b.url, weight=100),
                      routing_strategy="least-busy")
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {gateway.key}"}) as first:
        busy = first.headers["x-sovstack-deployment"]
        r = post(gateway)  # while the first stream is in flight, the other deployment is less busy
        assert r.headers["x-sovstack-deployment"] != busy
        first.read()


def register_fallback(gw: Gateway, model: str, fallbacks: list[str], *deployments: dict[str, object],
                      routing_strategy: str = "priority") -> None:
    from sovstack.core.context import unit_of_work
    from sovstack.gateway import service
    from sovstack.gateway.schemas import Catalogue
    from tests.gateway.conftest import OPERATOR

    with gw.db.session() as s, unit_of_work(s, OPERATOR):
        service.apply_catalogue(s, OPERATOR, gw.db.settings, Catalogue.model_validate({"models": [
            {"name": model, "fallbacks": fallbacks, "routing": routing_strategy, "deployments": list(deployments)}]}))
