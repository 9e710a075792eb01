"""Upstreams that misbehave the ways real ones do, and tenants that do: none of it may reach other tenants,
escape metering, leak the gateway's credentials or leave a circuit stuck (#15 D1–D5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sovstack.core.tables import AuditEvent
from sovstack.gateway import sse
from sovstack.gateway.tables import Usage
from tests.conftest import make_key, make_user
from tests.gateway.conftest import Gateway, deployment, register
from tests.gateway.upstream import SECRET_DETAIL, Upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there, how are you?"}]}
UPSTREAM_KEY = "sk-upstream-0123456789abcdefSECRET"


def post(gw: Gateway, body: dict[str, Any] = CHAT, key: str | None = None) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key or gw.key}"})


def stream_lines(gw: Gateway, key: str | None = None, body: dict[str, Any] = CHAT) -> tuple[int, list[str]]:
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json={**body, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {key or gw.key}"}) as r:
        r.read()
        return r.status_code, [line for line in r.text.splitlines() if line]


def usage_rows(gw: Gateway, wait_for: int = 1) -> list[Usage]:
    deadline = time.monotonic() + 5
    while True:
        with gw.db.session() as s:
            rows = list(s.scalars(select(Usage).order_by(Usage.id)))
            s.expunge_all()
        if len(rows) >= wait_for or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def circuits(gw: Gateway) -> dict[str, str]:
    return {d["name"]: d["circuit"] for d in httpx.get(
        f"{gw.url}/api/v1/gateway/deployments", headers={"Authorization": f"Bearer {gw.admin_key}"}).json()}


# D1 ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("streamed", [True, False])
def test_one_tenants_bad_requests_never_open_the_circuit_for_everyone(
        gateway: Gateway, upstreams: Callable[..., Upstream], streamed: bool) -> None:
    up = upstreams("shared", "400")
    register(gateway.db, "m", deployment("shared", up.url, failures_to_open=3))
    for _ in range(6):  # twice the failures that would open a circuit
        if streamed:
            status, lines = stream_lines(gateway)
            body = httpx.Response(status, content="\n".join(lines)).json()
        else:
            r = post(gateway)
            status, body = r.status_code, r.json()
        assert status == 400
        assert body["error"]["message"] == "injected 400: max_tokens is too large"
        assert body["error"]["param"] == "max_tokens" and body["error"]["deployment"] == "shared"
    assert circuits(gateway) == {"shared": "closed"}
    up.mode = "ok"
    other = make_key(gateway.db, make_user(gateway.db, "other-tenant@test.example")["id"], ["gateway"])
    r = post(gateway, key=other)
    assert r.status_code == 200, r.text  # another tenant is served: the first one's errors were their own
    assert [u.outcome for u in usage_rows(gateway, 7)] == ["upstream_error"] * 6 + ["ok"]


def test_an_upstream_error_body_is_filtered_before_it_reaches_the_caller(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d", "400").url, api_key=UPSTREAM_KEY))
    for text in (post(gateway).text, "\n".join(stream_lines(gateway)[1])):
        assert SECRET_DETAIL not in text and "SECRET" not in text and "debug" not in text


# D2 ----------------------------------------------------------------------------------------------

def test_a_stream_without_usage_is_metered_by_estimate_and_says_so(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("quiet", "nousage")
    register(gateway.db, "m", deployment("quiet", up.url, price_in=1_000_000, price_out=2_000_000))
    status, lines = stream_lines(gateway)
    assert status == 200 and lines[-1] == "data: [DONE]"
    assert up.received[-1]["stream_options"] == {"include_usage": True}  # asked for, never sent
    row = usage_rows(gateway)[0]
    assert row.outcome == "ok" and row.estimated
    assert row.tokens_out == 5  # "part0 part1 part2 " is 18 characters: 5 tokens at 4 characters each
    assert row.tokens_in == 7  # "hello there, how are you?" is 25 characters
    assert row.cost == pytest.approx(7 + 10)
    r = post(gateway)
    assert r.status_code == 200
    row = usage_rows(gateway, 2)[1]
    assert row.estimated and row.tokens_out == 4  # "hello from quiet"


def test_a_client_hanging_up_mid_stream_is_charged_for_what_it_consumed(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("slow", upstreams("slow", "slow").url))
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {gateway.key}"}) as r:
        first = next(line for line in r.iter_lines() if line)  # read the first event, then hang up
    assert "part0" in first
    row = usage_rows(gateway)[0]
    assert row.outcome == "client_closed" and row.estimated
    assert row.tokens_in == 7 and row.tokens_out >= 2  # the prompt, and at least "part0 " that was relayed


def test_the_estimate_counts_non_latin_scripts_by_character() -> None:
    from sovstack.gateway.metering import Call, count_text, estimate_tokens

    call = Call(actor="a", key_prefix="k", organisation_id=None, model="m", endpoint="chat", classification="open")
    count_text(call, "नमस्ते दुनिया")
    count_text(call, "hello")
    assert (call.relayed_ascii, call.relayed_other) == (6, 12)
    assert estimate_tokens(call.relayed_ascii, call.relayed_other) == 14


# D3 ----------------------------------------------------------------------------------------------

def test_a_half_open_probe_abandoned_by_its_client_does_not_leave_the_circuit_stuck(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("fragile", "500")
    register(gateway.db, "m", deployment("fragile", up.url, failures_to_open=1, cool_down_seconds=1))
    assert post(gateway).status_code == 503
    assert circuits(gateway) == {"fragile": "open"}
    time.sleep(1.1)
    up.mode = "slow"
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30,
                      headers={"Authorization": f"Bearer {gateway.key}"}) as r:
        next(line for line in r.iter_lines() if line)  # the probe's client reads one event and hangs up
    assert usage_rows(gateway, 2)[-1].outcome == "client_closed"
    up.mode = "ok"
    r = post(gateway)
    assert r.status_code == 200, r.text  # the next request may probe: it answers, and the circuit closes
    assert circuits(gateway) == {"fragile": "closed"}


# D4 ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["nospace", "cr"])
def test_events_written_any_way_the_sse_specification_allows_are_relayed_and_metered(
        gateway: Gateway, upstreams: Callable[..., Upstream], mode: str) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d", mode).url, failures_to_open=1))
    for _ in range(2):
        status, lines = stream_lines(gateway)
        assert status == 200 and lines[-1] == "data: [DONE]"
        assert all(line.startswith("data: ") for line in lines)
        text = "".join(httpx.Response(200, content=line[6:]).json()["choices"][0]["delta"].get("content", "")
                       for line in lines[:-1])
        assert text == "part0 part1 part2 "
    rows = usage_rows(gateway, 2)
    assert [(u.outcome, u.tokens_in, u.tokens_out, u.estimated) for u in rows] == [("ok", 5, 3, False)] * 2
    assert circuits(gateway) == {"d": "closed"}


def test_sse_parser_follows_the_specification() -> None:
    parser = sse.Parser()
    events = parser.feed(b"data:a\r\n\r\ndata: b\rdata:  c\r\r: comment\n\nid: 3\nretry: 10\n")
    events += parser.feed(b"event: done\ndata\n\ndata: split")
    events += parser.feed(b" across\r")
    events += parser.feed(b"\n\n")  # a CR LF split across two reads is one line end
    assert [(e.data, e.event) for e in events] == [("a", ""), ("b\n c", ""), ("", "done"), ("split across", "")]
    assert parser.comments == 1
    assert parser.feed(b"data: never ended") == [] and parser.close() == []


# D5 ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["401", "403", "404"])
def test_an_upstream_refusing_the_gateway_is_a_502_that_never_relays_its_answer(
        gateway: Gateway, upstreams: Callable[..., Upstream], status: str) -> None:
    register(gateway.db, "m", deployment("misconfigured", upstreams("bad", status).url, api_key=UPSTREAM_KEY))
    for r in (post(gateway), httpx.post(f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True},
                                        headers={"Authorization": f"Bearer {gateway.key}"}, timeout=30)):
        assert r.status_code == 502, r.text
        assert UPSTREAM_KEY not in r.text and "Incorrect API key" not in r.text
        error = r.json()["error"]
        assert error["type"] == "api_error" and "misconfigured" in error["message"]
        assert f"HTTP {status}" in error["message"]
    with gateway.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.chat")).all()
        assert events and all(UPSTREAM_KEY not in str(e.detail) + str(e.reasons) for e in events)


def test_an_upstream_refusing_the_gateway_fails_over_to_the_next_deployment(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("first", upstreams("bad", "401").url, priority=1, api_key=UPSTREAM_KEY),
             deployment("second", upstreams("good").url, priority=2))
    r = post(gateway)
    assert r.status_code == 200 and r.headers["x-sovstack-deployment"] == "second"
    status, lines = stream_lines(gateway)
    assert status == 200 and lines[-1] == "data: [DONE]"
