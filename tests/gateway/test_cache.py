"""The organisations' exact-match answer cache: off by default, never for sensitive requests or across
organisations, encrypted at rest, metered and audited (#15)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sovstack.gateway.tables import CachedAnswer, Usage
from tests.conftest import make_key, make_user
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.test_limits import bearer, organisation
from tests.gateway.upstream import Upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "What is the capital of Kerala?"}]}


@pytest.fixture
def orgs(gateway: Gateway, upstreams: Callable[..., Upstream]) -> dict[str, Any]:
    up = upstreams("desi")
    register(gateway.db, "m", deployment("desi", up.url))
    boss, member, other = (make_user(gateway.db, f"{n}@test.example") for n in ("boss", "member", "other"))
    org = organisation(gateway, "Ministry", (boss["id"], "org_admin"), (member["id"], "member"))
    elsewhere = organisation(gateway, "Elsewhere", (other["id"], "org_admin"))
    return {"up": up, "org": org, "admin": make_key(gateway.db, boss["id"], ["read", "write"]),
            "key": make_key(gateway.db, member["id"], ["gateway"], organisation_id=org),
            "second": make_key(gateway.db, member["id"], ["gateway"], organisation_id=org),
            "stranger": make_key(gateway.db, other["id"], ["gateway"], organisation_id=elsewhere)}


def chat(gw: Gateway, key: str, body: dict[str, Any] = CHAT, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=bearer(key, **headers), timeout=30)


def turn_on(gw: Gateway, orgs: dict[str, Any], ttl: int = 300) -> None:
    r = httpx.put(f"{gw.url}/api/v1/gateway/organisations/{orgs['org']}/cache", headers=bearer(orgs["admin"]),
                  json={"enabled": True, "ttl_seconds": ttl}, timeout=10)
    assert r.status_code == 200, r.text


def test_off_by_default_then_a_repeat_is_answered_from_the_cache(gateway: Gateway, orgs: dict[str, Any]) -> None:
    for _ in range(2):
        assert "x-sovstack-cache" not in chat(gateway, orgs["key"]).headers
    assert len(orgs["up"].received) == 2
    turn_on(gateway, orgs)
    first = chat(gateway, orgs["key"])
    assert first.headers["x-sovstack-cache"] == "miss"
    # Another key of the organisation, the same body with its keys in another order: a hit.
    again = chat(gateway, orgs["second"], {"messages": CHAT["messages"], "model": "m"})
    assert again.headers["x-sovstack-cache"] == "hit" and again.json() == first.json()
    assert len(orgs["up"].received) == 3
    with gateway.db.session() as s:
        row = s.scalars(select(Usage).order_by(Usage.id.desc())).first()
        assert row is not None and (row.outcome, row.tokens_in, row.tokens_out, row.cost) == ("cached", 0, 0, 0)
        kept = s.scalars(select(CachedAnswer)).one()
        assert "Kerala" not in kept.body and "hello from" not in kept.body  # encrypted at rest


def test_never_across_organisations_nor_for_sensitive_requests_nor_streams(
        gateway: Gateway, orgs: dict[str, Any]) -> None:
    turn_on(gateway, orgs)
    chat(gateway, orgs["key"])
    assert "x-sovstack-cache" not in chat(gateway, orgs["stranger"]).headers  # another organisation: its own call
    for _ in range(2):
        r = chat(gateway, orgs["key"], **{"x-sovstack-classification": "sensitive"})
        assert r.status_code == 200 and "x-sovstack-cache" not in r.headers
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True},
                      headers=bearer(orgs["key"]), timeout=30) as r:
        r.read()
        assert "x-sovstack-cache" not in r.headers
    assert len(orgs["up"].received) == 5


def test_cache_control_and_turning_it_off_forget_answers(gateway: Gateway, orgs: dict[str, Any]) -> None:
    turn_on(gateway, orgs)
    chat(gateway, orgs["key"])
    assert chat(gateway, orgs["key"], **{"cache-control": "no-cache"}).headers["x-sovstack-cache"] == "miss"
    assert "x-sovstack-cache" not in chat(gateway, orgs["key"], **{"cache-control": "no-store"}).headers
    assert len(orgs["up"].received) == 3
    member = httpx.put(f"{gateway.url}/api/v1/gateway/organisations/{orgs['org']}/cache", timeout=10,
                       headers=bearer(orgs["key"]), json={"enabled": False})
    assert member.status_code == 403  # a member may not; its admins may
    r = httpx.put(f"{gateway.url}/api/v1/gateway/organisations/{orgs['org']}/cache", timeout=10,
                  headers=bearer(orgs["admin"]), json={"enabled": False})
    assert r.status_code == 200
    with gateway.db.session() as s:
        assert s.scalars(select(CachedAnswer)).all() == []
    assert "x-sovstack-cache" not in chat(gateway, orgs["key"]).headers


def test_an_expired_answer_is_not_served(gateway: Gateway, orgs: dict[str, Any]) -> None:
    from datetime import timedelta

    turn_on(gateway, orgs, ttl=60)
    chat(gateway, orgs["key"])
    with gateway.db.session() as s:
        for row in s.scalars(select(CachedAnswer)):
            row.expires_at -= timedelta(seconds=61)
        s.commit()
    assert chat(gateway, orgs["key"]).headers["x-sovstack-cache"] == "miss"


def test_the_cli_turns_it_on_and_purges(gateway: Gateway, orgs: dict[str, Any]) -> None:
    from sovstack.cli import run

    home = ["--home", str(gateway.app.state.settings.home)]
    assert run([*home, "gateway", "cache", str(orgs["org"]), "--enable", "--ttl", "120"]) == 0
    chat(gateway, orgs["key"])
    assert chat(gateway, orgs["key"]).headers["x-sovstack-cache"] == "hit"
    assert run([*home, "gateway", "cache", str(orgs["org"]), "--purge"]) == 0
    assert chat(gateway, orgs["key"]).headers["x-sovstack-cache"] == "miss"
    assert run([*home, "gateway", "cache", str(orgs["org"])]) == 2  # neither on, off nor purge: say which


def test_answers_kept_in_redis_when_configured(gateway: Gateway, orgs: dict[str, Any]) -> None:
    import redis

    from sovstack.gateway.cache import RedisStore

    client = redis.Redis.from_url("redis://127.0.0.1:6379/14")
    client.flushdb()
    gateway.app.state.gateway.answers.store = RedisStore(client)
    turn_on(gateway, orgs, ttl=90)
    chat(gateway, orgs["key"])
    assert chat(gateway, orgs["key"]).headers["x-sovstack-cache"] == "hit"
    keys = [k.decode() for k in client.keys("sovstack:cache:*")]
    assert len(keys) == 1 and 0 < client.ttl(keys[0]) <= 90 and b"Kerala" not in (client.get(keys[0]) or b"")
    r = httpx.delete(f"{gateway.url}/api/v1/gateway/organisations/{orgs['org']}/cache", headers=bearer(orgs["admin"]),
                     timeout=10)
    assert r.json() == {"deleted": 1} and client.keys("sovstack:cache:*") == []
    client.flushdb()


def test_an_answer_kept_at_one_classification_is_not_served_at_another(gateway: Gateway,
                                                                       orgs: dict[str, Any]) -> None:
    # A restricted request may be routed to other deployments than an open one: never the open one's answer.
    turn_on(gateway, orgs)
    assert chat(gateway, orgs["key"]).headers["x-sovstack-cache"] == "miss"
    restricted = chat(gateway, orgs["key"], **{"x-sovstack-classification": "restricted"})
    assert restricted.headers["x-sovstack-cache"] == "miss"
    assert chat(gateway, orgs["key"], **{"x-sovstack-classification": "restricted"}).headers[
        "x-sovstack-cache"] == "hit"
