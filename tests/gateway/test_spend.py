"""Spend control (#15): refused calls are metered and audited (D8), money and token budgets per key, person
and organisation with alerts, per-key model allowlists, tokens per minute and concurrency."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest
from openai import OpenAI
from sqlalchemy import select
from starlette.responses import StreamingResponse

from sovstack.cli import run
from sovstack.core import identity
from sovstack.core.tables import AuditEvent
from sovstack.gateway.proxy import Relayed
from sovstack.gateway.tables import Usage
from tests.conftest import PASSWORD, make_key, make_user
from tests.gateway.conftest import Gateway, deployment, fresh_minute, register
from tests.gateway.upstream import Upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "how much is left?"}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def prefix(key: str) -> str:
    return key.split("_")[0]


def chat(gw: Gateway, key: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, **extra}, headers=bearer(key), timeout=30)


def policy(gw: Gateway, actor: str, key: str, **body: Any) -> httpx.Response:
    return httpx.put(f"{gw.url}/api/v1/gateway/keys/{prefix(key)}/policy", json=body, headers=bearer(actor),
                     timeout=10)


def budget(gw: Gateway, actor: str, **body: Any) -> httpx.Response:
    return httpx.put(f"{gw.url}/api/v1/gateway/spend-budgets", json=body, headers=bearer(actor), timeout=10)


def usage_rows(gw: Gateway) -> list[tuple[str, str, int, float, str]]:
    with gw.db.session() as s:
        rows = s.execute(select(Usage.key_prefix, Usage.outcome, Usage.tokens_in + Usage.tokens_out, Usage.cost,
                                Usage.currency).order_by(Usage.id)).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]


def owner_key(gw: Gateway) -> str:
    """A key of the same person as ``gw.key`` that may change things (the key itself may only read)."""
    with gw.db.session() as s:
        user_id = identity.get_user(s, "dev@test.example").id
    return make_key(gw.db, user_id, ["read", "write"])


def events(gw: Gateway, action: str) -> list[AuditEvent]:
    with gw.db.session() as s:
        found = list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))
        s.expunge_all()
        return found


@pytest.fixture
def priced(gateway: Gateway, upstreams: Callable[..., Upstream]) -> Upstream:
    """Model m on one deployment priced in EUR: 1000 EUR per million tokens, so a call (18 tokens) costs 0.018."""
    up = upstreams("desi")
    register(gateway.db, "m", deployment("desi", up.url, price_in=1000, price_out=1000, currency="eur",
                                         timeout_seconds=20))
    return up


def test_a_rate_limited_call_leaves_a_usage_row_and_an_audit_event(gateway: Gateway, priced: Upstream) -> None:
    assert policy(gateway, gateway.admin_key, gateway.key, requests_per_minute=1).status_code == 200
    fresh_minute()
    assert chat(gateway, gateway.key).status_code == 200
    r = chat(gateway, gateway.key)
    assert r.status_code == 429 and r.headers["retry-after"]
    assert usage_rows(gateway) == [(prefix(gateway.key), "ok", 18, pytest.approx(0.018), "EUR"),
                                   (prefix(gateway.key), "rate_limited", 0, 0.0, "")]
    refused = [e for e in events(gateway, "gateway.chat") if e.outcome == "refused"]
    assert len(refused) == 1 and "rate limit of 1 requests per minute" in json.loads(refused[0].reasons)[0]
    report = httpx.get(f"{gateway.url}/api/v1/gateway/usage?by=key", headers=bearer(gateway.admin_key)).json()
    row = report["rows"][0]
    assert (row["requests"], row["refused"], row["errors"]) == (2, 1, 1)
    assert (row["cost"], row["currency"], row["costs"]) == (0.018, "EUR", {"EUR": 0.018})
    assert report["daily"][0]["costs"] == {"EUR": 0.018}


def test_a_second_key_does_not_escape_the_persons_money_budget(gateway: Gateway, priced: Upstream) -> None:
    r = budget(gateway, gateway.admin_key, scope="person", subject="dev@test.example", unit="EUR", amount=0.03,
               period="day")
    assert r.status_code == 200, r.text
    assert (r.json()["unit"], r.json()["spent"]) == ("EUR", 0)
    user_id = int(r.json()["subject"])
    second = make_key(gateway.db, user_id, ["read", "gateway"])
    assert chat(gateway, gateway.key).status_code == 200  # 0.018 EUR
    assert chat(gateway, second).status_code == 200  # 0.036: crosses the budget; the crossing call is answered
    for key in (gateway.key, second, make_key(gateway.db, user_id, ["gateway"])):
        r = chat(gateway, key)
        assert r.status_code == 429, r.text
        assert "person budget of 0.03 EUR per day" in r.json()["error"]["message"]
    assert len(priced.received) == 2
    mine = httpx.get(f"{gateway.url}/api/v1/gateway/spend-budgets", headers=bearer(second)).json()
    assert [(b["scope"], b["spent"], b["unit"]) for b in mine] == [("person", 0.036, "EUR")]
    assert [o for _, o, *_ in usage_rows(gateway)] == ["ok", "ok", "over_budget", "over_budget", "over_budget"]


def test_a_budget_in_another_currency_does_not_count_this_spend(gateway: Gateway, priced: Upstream) -> None:
    assert budget(gateway, gateway.admin_key, scope="key", subject=prefix(gateway.key), unit="USD",
                  amount=0.001).status_code == 200
    assert [chat(gateway, gateway.key).status_code for _ in range(3)] == [200, 200, 200]


def test_an_organisation_budget_binds_and_only_its_admins_and_admins_set_it(gateway: Gateway,
                                                                           priced: Upstream) -> None:
    from tests.gateway.test_limits import organisation

    boss, member = make_user(gateway.db, "boss@test.example"), make_user(gateway.db, "meera@test.example")
    org = organisation(gateway, "Ministry", (boss["id"], "org_admin"), (member["id"], "member"))
    boss_key = make_key(gateway.db, boss["id"], ["read", "write"])
    member_key = make_key(gateway.db, member["id"], ["read", "write", "gateway"])
    assert budget(gateway, member_key, scope="organisation", subject=str(org), amount=20).status_code == 403
    assert budget(gateway, boss_key, scope="organisation", subject="Ministry", amount=20, period="week") \
        .status_code == 200
    assert chat(gateway, member_key).status_code == 200
    assert chat(gateway, member_key).status_code == 200  # 18 < 20: admitted, crosses to 36
    r = chat(gateway, member_key)
    assert r.status_code == 429 and "organisation budget of 20 tokens per week" in r.json()["error"]["message"]
    assert httpx.get(f"{gateway.url}/api/v1/gateway/spend-budgets", headers=bearer(member_key)).json() == []
    shown = httpx.get(f"{gateway.url}/api/v1/gateway/spend-budgets", headers=bearer(boss_key)).json()
    assert [(b["label"], b["spent"]) for b in shown] == [("Ministry", 36)]


def test_alerts_fire_once_per_threshold(gateway: Gateway, priced: Upstream,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    owner = owner_key(gateway)
    r = budget(gateway, owner, scope="key", subject=prefix(gateway.key), amount=40, period="day",
               alerts=[100, 25, 50])  # its owner may limit their own key
    assert r.status_code == 200, r.text
    # 18, 36, 54 tokens: the calls cross 10, 20 and 40 (25, 50, 100 %) one each; the fourth is refused.
    codes = [chat(gateway, gateway.key).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    alerts = httpx.get(f"{gateway.url}/api/v1/gateway/alerts", headers=bearer(gateway.key)).json()
    assert sorted((a["threshold"], a["spent"]) for a in alerts) == [(25, 18), (50, 36), (100, 54)]
    assert all(a["amount"] == 40 and a["unit"] == "tokens" for a in alerts)
    audited = events(gateway, "gateway.budget_alert")
    assert sorted(json.loads(e.detail)["threshold"] for e in audited) == [25, 50, 100]
    assert budget(gateway, owner, scope="key", subject=prefix(gateway.key), amount=4000).status_code == 403
    home = ["--home", str(gateway.app.state.settings.home)]
    assert run([*home, "gateway", "alerts", "--json"]) == 0
    assert sorted(a["threshold"] for a in json.loads(capsys.readouterr().out)) == [25, 50, 100]
    assert run([*home, "gateway", "spend-budgets", "--json"]) == 0
    assert [(b["spent"], b["amount"]) for b in json.loads(capsys.readouterr().out)] == [(54, 40)]
    assert run([*home, "audit", "verify"]) == 0  # the alerts' events sit in the chain with the calls'


def test_tokens_per_minute(gateway: Gateway, priced: Upstream) -> None:
    assert policy(gateway, gateway.admin_key, gateway.key, tokens_per_minute=30).status_code == 200
    fresh_minute()
    codes = [chat(gateway, gateway.key).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # 18, then 36 >= 30: refused
    r = chat(gateway, gateway.key)
    assert "used 36 of its 30 tokens per minute" in r.json()["error"]["message"]
    assert [o for _, o, *_ in usage_rows(gateway)] == ["ok", "ok", "rate_limited", "rate_limited"]


def test_a_model_off_the_allowlist_is_refused_with_the_reason_and_not_metered(gateway: Gateway,
                                                                              priced: Upstream) -> None:
    owner = owner_key(gateway)
    assert policy(gateway, owner, gateway.key, models=["other"]).status_code == 200  # its owner narrows
    assert policy(gateway, owner, gateway.key, models=None).status_code == 403  # … but never widens
    r = chat(gateway, gateway.key)
    assert r.status_code == 403
    assert "may not call the model 'm'" in r.json()["error"]["message"]
    assert r.json()["error"]["reasons"] == [f"key {prefix(gateway.key)} may call only other"]
    assert priced.received == []
    assert usage_rows(gateway) == [(prefix(gateway.key), "not_allowed", 0, 0.0, "")]
    assert [e.outcome for e in events(gateway, "gateway.chat")] == ["refused"]
    # Only the stated fields change: a later limit leaves the allowlist as it was.
    assert policy(gateway, gateway.admin_key, gateway.key, tokens_per_minute=1000).status_code == 200
    shown = httpx.get(f"{gateway.url}/api/v1/gateway/keys/{prefix(gateway.key)}/policy",
                      headers=bearer(gateway.key)).json()
    assert (shown["models"], shown["tokens_per_minute"]) == (["other"], 1000)
    assert policy(gateway, gateway.admin_key, gateway.key, models=["m"]).status_code == 200
    assert chat(gateway, gateway.key).status_code == 200


def _wait_for(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_concurrent_calls_beyond_the_limit_get_429(gateway: Gateway, priced: Upstream) -> None:
    assert policy(gateway, gateway.admin_key, gateway.key, max_concurrency=2).status_code == 200
    priced.mode = "hold"
    with ThreadPoolExecutor(max_workers=2) as held:
        first = [held.submit(chat, gateway, gateway.key) for _ in range(2)]
        _wait_for(lambda: len(priced.received) == 2)
        with ThreadPoolExecutor(max_workers=4) as pool:
            refused = list(pool.map(lambda _: chat(gateway, gateway.key), range(4)))
        assert [r.status_code for r in refused] == [429] * 4
        assert "already has 2 calls in flight" in refused[0].json()["error"]["message"]
        priced.gate.set()
        assert [f.result().status_code for f in first] == [200, 200]
    assert chat(gateway, gateway.key).status_code == 200  # the slots came back
    assert sorted(o for _, o, *_ in usage_rows(gateway)) == ["ok"] * 3 + ["over_concurrency"] * 4


def test_a_hung_up_stream_and_a_failed_call_give_their_slot_back(gateway: Gateway, priced: Upstream) -> None:
    assert policy(gateway, gateway.admin_key, gateway.key, max_concurrency=1).status_code == 200
    inflight = gateway.app.state.gateway.inflight
    priced.mode = "endless"
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    stream = client.chat.completions.create(model="m", messages=CHAT["messages"], stream=True)
    next(iter(stream))
    assert inflight.held(prefix(gateway.key)) == 1
    assert chat(gateway, gateway.key).status_code == 429  # the stream holds the only slot
    stream.close()  # the client hangs up mid-stream
    _wait_for(lambda: inflight.held(prefix(gateway.key)) == 0)
    priced.mode = "500"
    assert chat(gateway, gateway.key).status_code == 503  # every deployment failed: an error, not a leak
    assert inflight.held(prefix(gateway.key)) == 0
    priced.mode = "ok"
    assert chat(gateway, gateway.key).status_code == 200
    assert chat(gateway, gateway.key, stream=True).status_code == 200
    assert inflight.held(prefix(gateway.key)) == 0


def test_a_relay_the_client_left_before_it_started_is_still_cleaned_up() -> None:
    # A client gone before the first byte: Starlette may cancel the body before its first step, so the
    # relay's own finally never runs (shown with a plain StreamingResponse); Relayed cleans up instead.
    ran: list[str] = []

    async def relay() -> AsyncIterator[bytes]:
        try:
            ran.append("started")
            yield b"data: [DONE]\n\n"
        finally:
            ran.append("relay's finally")

    async def abandon() -> None:
        ran.append("abandoned")

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await anyio.sleep(0)  # a server's send may wait (a full socket buffer): the disconnect wins there
        ran.append(message["type"])

    scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
    anyio.run(StreamingResponse(relay()), scope, gone, send)
    assert ran == []  # the leak: neither the relay nor its clean-up ran
    anyio.run(Relayed(relay(), abandon), scope, gone, send)
    assert ran == ["abandoned"]
    ran.clear()

    async def stays() -> dict[str, Any]:
        await anyio.sleep(5)
        return {"type": "http.disconnect"}

    anyio.run(Relayed(relay(), abandon), scope, stays, send)  # a relay that ran cleans up after itself only
    assert ran == ["http.response.start", "started", "http.response.body", "relay's finally",
                   "http.response.body"]


def test_the_console_shows_budgets_alerts_key_limits_and_costs_with_their_currency(
        gateway: Gateway, priced: Upstream) -> None:
    from tests.gateway.test_pages import post_login

    owner = make_user(gateway.db, "owner@test.example")
    key = make_key(gateway.db, owner["id"], ["read", "write", "gateway"])
    assert budget(gateway, key, scope="key", subject=prefix(key), unit="EUR", amount=0.02, period="day",
                  alerts=[50]).status_code == 200
    assert policy(gateway, key, key, models=["m"], max_concurrency=3).status_code == 200
    assert chat(gateway, key).status_code == 200  # 0.018 EUR: past 50 %
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        assert post_login(browser, owner["email"], owner["password"]).status_code == 303  # type: ignore[arg-type]
        page = browser.get("/gateway/limits").text
        assert f"key: key {prefix(key)} (test)" in page and "0.02 EUR" in page and "0.02 EUR" in page
        assert "50% of the key" in page and "0.018 of 0.02 EUR" in page
        assert 'id="key-limits"' in page and ">m</td>" in page
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:  # the calls of no organisation: an admin's
        assert post_login(browser, "gw-admin@test.example", PASSWORD).status_code == 303  # type: ignore[arg-type]
        assert "0.0180 EUR" in browser.get("/gateway/usage?by=key").text


def test_key_limits_and_budgets_from_the_cli(gateway: Gateway, priced: Upstream,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(gateway.app.state.settings.home)]
    key = prefix(gateway.key)
    assert run([*home, "gateway", "key-policy", key, "--models", "m, other", "--tpm", "500",
                "--max-concurrency", "2"]) == 0
    capsys.readouterr()
    assert run([*home, "gateway", "key-limits", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["models"], shown["tokens_per_minute"], shown["max_concurrency"]) == (["m", "other"], 500, 2)
    assert run([*home, "gateway", "key-policy", key, "--models", "*", "--max-concurrency", "0"]) == 0
    capsys.readouterr()
    assert run([*home, "gateway", "key-limits", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["models"], shown["tokens_per_minute"], shown["max_concurrency"]) == (None, 500, None)
    assert run([*home, "gateway", "spend-budget", "person", "dev@test.example", "--amount", "5", "--unit", "inr",
                "--period", "week"]) == 0
    assert "5 INR per week" in capsys.readouterr().out
    assert run([*home, "gateway", "spend-budget", "person", "dev@test.example", "--amount", "5",
                "--unit", "euros"]) == 2
    assert "ISO 4217" in capsys.readouterr().err
    assert run([*home, "gateway", "spend-budgets", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["unit"], row["period"], row["spent"]) == ("INR", "week", 0)
    assert run([*home, "gateway", "spend-budget-remove", str(row["id"])]) == 0
    assert chat(gateway, gateway.key).status_code == 200
    capsys.readouterr()
    assert run([*home, "gateway", "usage", "--by", "key"]) == 0
    assert "EUR" in capsys.readouterr().out  # the table shows each cost with its currency
    assert run([*home, "gateway", "usage", "--by", "key", "--json"]) == 0
    [used] = json.loads(capsys.readouterr().out)
    assert (used["costs"], used["currency"]) == ({"EUR": 0.018}, "EUR")


def test_concurrent_calls_record_each_alert_once(gateway: Gateway, priced: Upstream) -> None:
    assert budget(gateway, gateway.admin_key, scope="person", subject="dev@test.example", amount=500,
                  alerts=[10, 20, 90]).status_code == 200
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda _: chat(gateway, gateway.key).status_code, range(12)))
    assert codes == [200] * 12  # 216 tokens: past 10 % (50) and 20 % (100), not 90 %
    alerts = httpx.get(f"{gateway.url}/api/v1/gateway/alerts", headers=bearer(gateway.admin_key)).json()
    assert sorted(a["threshold"] for a in alerts) == [10, 20]
