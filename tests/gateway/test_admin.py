"""Managing the catalogue: partial key-policy updates (D6), one-line names and keys (D9), circuits shared
between processes (D10), disabling and deleting deployments and models (D11) — issue #15."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from sovstack.cli import run
from sovstack.core import audit
from sovstack.core.base import utcnow
from sovstack.core.context import unit_of_work
from sovstack.core.settings import Settings
from sovstack.core.tables import AuditEvent, User
from sovstack.gateway import routing, service
from sovstack.gateway.schemas import KeyPolicySet
from sovstack.gateway.tables import CircuitReport, Usage
from tests.conftest import make_key
from tests.gateway.conftest import OPERATOR, Gateway, deployment, register
from tests.gateway.upstream import Upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def home(gw: Gateway) -> list[str]:
    return ["--home", str(gw.app.state.settings.home)]


def policy_of(gw: Gateway, prefix: str, key: str | None = None) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/api/v1/gateway/keys/{prefix}/policy", headers=bearer(key or gw.admin_key), timeout=10)
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def owner_key(gw: Gateway) -> str:
    with gw.db.session() as s:
        user_id = s.scalars(select(User.id).where(User.email == "dev@test.example")).one()
    return make_key(gw.db, user_id, ["read", "write", "gateway"])


# D6: a partial update changes only what it states ------------------------------------------------------------

def test_a_partial_key_policy_update_keeps_what_it_does_not_state(gateway: Gateway) -> None:
    prefix = gateway.key.split("_")[0]
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_key_policy(s, OPERATOR, prefix, KeyPolicySet(default_classification="sensitive",
                                                                 floor_classification="restricted",
                                                                 requests_per_minute=10))
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_key_policy(s, OPERATOR, prefix, KeyPolicySet(requests_per_minute=5))
    assert {k: v for k, v in policy_of(gateway, prefix).items() if k != "key_prefix"} == {
        "default_classification": "sensitive", "floor_classification": "restricted", "requests_per_minute": 5,
        "models": None, "tokens_per_minute": None, "max_concurrency": None}

    url = f"{gateway.url}/api/v1/gateway/keys/{prefix}/policy"
    r = httpx.put(url, json={"floor_classification": "sensitive"}, headers=bearer(gateway.admin_key), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"key_prefix": prefix, "default_classification": "sensitive",
                        "floor_classification": "sensitive", "requests_per_minute": 5, "models": None,
                        "tokens_per_minute": None, "max_concurrency": None}
    # The spend limits are partial updates too: each keeps what the other states.
    r = httpx.put(url, json={"models": ["m"], "max_concurrency": 2}, headers=bearer(gateway.admin_key), timeout=10)
    assert r.status_code == 200 and r.json()["requests_per_minute"] == 5 and r.json()["models"] == ["m"]
    r = httpx.put(url, json={"requests_per_minute": 6}, headers=bearer(gateway.admin_key), timeout=10)
    assert r.json()["models"] == ["m"] and r.json()["max_concurrency"] == 2
    r = httpx.put(url, json={"models": None, "max_concurrency": None}, headers=bearer(gateway.admin_key), timeout=10)
    assert r.json()["models"] is None and r.json()["requests_per_minute"] == 6
    r = httpx.put(url, json={"requests_per_minute": 5}, headers=bearer(gateway.admin_key), timeout=10)
    r = httpx.put(url, json={"requests_per_minute": None}, headers=bearer(gateway.admin_key), timeout=10)
    assert r.status_code == 200 and r.json()["requests_per_minute"] is None  # an explicit null clears it
    assert r.json()["floor_classification"] == "sensitive"
    r = httpx.put(url, json={"default_classification": "open"}, headers=bearer(gateway.admin_key), timeout=10)
    assert r.status_code == 422 and r.json()["error"]["field"] == "default_classification"  # judged merged
    r = httpx.put(url, json={"floor_classification": None}, headers=bearer(gateway.admin_key), timeout=10)
    assert r.status_code == 422  # a classification cannot be cleared


def test_a_floor_raised_above_the_default_carries_it_up(gateway: Gateway) -> None:
    prefix = gateway.key.split("_")[0]
    r = httpx.put(f"{gateway.url}/api/v1/gateway/keys/{prefix}/policy", json={"floor_classification": "restricted"},
                  headers=bearer(gateway.admin_key), timeout=10)
    assert r.status_code == 200, r.text
    assert (r.json()["default_classification"], r.json()["floor_classification"]) == ("restricted", "restricted")


def test_the_owner_may_tighten_one_field_without_an_admin(gateway: Gateway) -> None:
    prefix, mine = gateway.key.split("_")[0], owner_key(gateway)
    url = f"{gateway.url}/api/v1/gateway/keys/{prefix}/policy"
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_key_policy(s, OPERATOR, prefix, KeyPolicySet(default_classification="sensitive",
                                                                 floor_classification="open",
                                                                 requests_per_minute=10))
    # Before partial updates, the unstated default fell back to open: "looser", so refused to the owner.
    r = httpx.put(url, json={"requests_per_minute": 5}, headers=bearer(mine), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["default_classification"] == "sensitive"
    r = httpx.put(url, json={"floor_classification": "restricted"}, headers=bearer(mine), timeout=10)
    assert r.status_code == 200, r.text
    assert (r.json()["default_classification"], r.json()["requests_per_minute"]) == ("sensitive", 5)
    for looser in ({"requests_per_minute": None}, {"requests_per_minute": 6}, {"default_classification": "restricted"}):
        assert httpx.put(url, json=looser, headers=bearer(mine), timeout=10).status_code == 403, looser
    assert policy_of(gateway, prefix, mine)["requests_per_minute"] == 5  # the owner may read it
    other = make_key(gateway.db, _someone_else(gateway), ["read", "gateway"])
    r = httpx.get(url, headers=bearer(other), timeout=10)
    assert r.status_code == 403  # another member may not


def _someone_else(gw: Gateway) -> int:
    from tests.conftest import make_user

    return int(make_user(gw.db, "other@test.example")["id"])


def test_key_policy_from_the_cli_changes_only_what_is_given(gateway: Gateway,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    prefix = gateway.key.split("_")[0]
    assert run([*home(gateway), "gateway", "key-policy", prefix, "--default", "sensitive", "--floor", "restricted",
                "--rpm", "9"]) == 0
    capsys.readouterr()
    assert run([*home(gateway), "gateway", "key-policy", prefix, "--rpm", "4", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["default_classification"], shown["floor_classification"], shown["requests_per_minute"]) == (
        "sensitive", "restricted", 4)
    assert run([*home(gateway), "gateway", "key-policy", prefix, "--floor", "sensitive", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests_per_minute"] == 4
    assert run([*home(gateway), "gateway", "key-policy", prefix, "--no-rpm", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["requests_per_minute"] is None and shown["floor_classification"] == "sensitive"
    assert run([*home(gateway), "gateway", "key-policy", prefix, "--json"]) == 0  # no option: show it
    assert json.loads(capsys.readouterr().out) == shown
    assert run([*home(gateway), "gateway", "key-policy", prefix, "--rpm", "3", "--no-rpm"]) == 2


# D9: control characters in names, URLs and keys --------------------------------------------------------------

BAD_FIELDS = [("name", "dep\r\nX-Injected: 1"), ("api_key", "sk-upstream\r\nX-Injected: 1"),
              ("base_url", "http://127.0.0.1:1/v1\r\nHost: evil"), ("upstream_model", "m\nx"),
              ("name", "dep\x00"), ("api_key", "sk\x1b[2J")]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_control_characters_are_refused_naming_the_field(gateway: Gateway, field: str, value: str) -> None:
    register(gateway.db, "m")
    body = {**deployment("dep", "http://127.0.0.1:1/v1"), "model": "m", field: value}
    r = httpx.post(f"{gateway.url}/api/v1/gateway/deployments", json=body, headers=bearer(gateway.admin_key),
                   timeout=10)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field and "control characters" in error["message"]
    applied = httpx.post(f"{gateway.url}/api/v1/gateway/apply", headers=bearer(gateway.admin_key), timeout=10,
                         json={"models": [{"name": "m", "deployments": [{**body, "model": ""}]}]})
    assert applied.status_code == 422 and applied.json()["error"]["field"].endswith(field), applied.text
    assert httpx.get(f"{gateway.url}/api/v1/gateway/deployments", headers=bearer(gateway.admin_key),
                     timeout=10).json() == []


def test_a_model_name_with_a_line_break_is_refused(gateway: Gateway) -> None:
    r = httpx.post(f"{gateway.url}/api/v1/gateway/models", json={"name": "m\nx"}, headers=bearer(gateway.admin_key),
                   timeout=10)
    assert r.status_code == 422 and r.json()["error"]["field"] == "name"


def test_a_catalogue_file_with_a_line_break_in_a_key_is_exit_2(gateway: Gateway, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    entry = {**deployment("dep", "http://127.0.0.1:1/v1"), "api_key": "sk-1\r\nX-Injected: 1"}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": [{"name": "m", "deployments": [entry]}]}))
    assert run([*home(gateway), "gateway", "apply", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "api_key" in err and "control characters" in err


# D10: circuits as the servers see them -----------------------------------------------------------------------

def deployments_api(gw: Gateway) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{gw.url}/api/v1/gateway/deployments", headers=bearer(gw.admin_key), timeout=10)
    assert r.status_code == 200, r.text
    return {d["name"]: d for d in r.json()}


def deployments_cli(gw: Gateway, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    assert run([*home(gw), "gateway", "deployments", "--json"]) == 0
    return {d["name"]: d for d in json.loads(capsys.readouterr().out)}


def post(gw: Gateway, body: dict[str, Any] = CHAT) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=bearer(gw.key), timeout=30)


def test_a_circuit_opened_in_the_server_shows_open_in_the_cli_and_the_api(
        gateway: Gateway, upstreams: Callable[..., Upstream], capsys: pytest.CaptureFixture[str]) -> None:
    bad, good = upstreams("bad", "500"), upstreams("good")
    register(gateway.db, "m", deployment("first", bad.url, priority=1), deployment("second", good.url, priority=2))
    for _ in range(routing.FAILURES_TO_OPEN):
        assert post(gateway).headers["x-sovstack-deployment"] == "second"
    reporter = gateway.app.state.circuits
    reporter.flush()
    seen = deployments_cli(gateway, capsys)  # another process: it knows only what the server wrote
    assert (seen["first"]["circuit"], seen["second"]["circuit"]) == ("open", "closed")
    assert seen["first"]["circuit_process"] == reporter.process and seen["first"]["circuit_at"]
    assert "after 3 failures" in seen["first"]["circuit_detail"]
    api = deployments_api(gateway)
    assert api["first"]["circuit"] == "open" and api["first"]["circuit_process"] == reporter.process

    # The cool-down passes, the upstream recovers: the probe closes the circuit, and the CLI hears of it.
    bad.mode = "ok"
    first_id = api["first"]["id"]
    breaker = gateway.app.state.gateway.breakers.of(first_id)
    assert breaker.opened_at is not None
    breaker.opened_at -= routing.COOL_DOWN_SECONDS
    for _ in range(20):  # weighted order may pick "second" first: priority 1 goes first, so one call does it
        if post(gateway).headers["x-sovstack-deployment"] == "first":
            break
    reporter.flush()
    assert deployments_cli(gateway, capsys)["first"]["circuit"] == "closed"
    assert deployments_api(gateway)["first"]["circuit"] == "closed"


def test_transitions_are_written_not_requests(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("ok", upstreams("ok").url))
    for _ in range(5):
        assert post(gateway).status_code == 200
    gateway.app.state.circuits.flush()
    with gateway.db.session() as s:
        assert s.scalars(select(CircuitReport)).all() == []  # a healthy deployment costs no write at all


def test_a_dead_processs_open_circuit_does_not_show_open_forever(gateway: Gateway,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    register(gateway.db, "m", deployment("d", "http://127.0.0.1:1/v1"))
    dep_id = deployments_api(gateway)["d"]["id"]

    def report(opened_seconds_ago: float) -> None:
        with gateway.db.session() as s:
            s.merge(CircuitReport(deployment_id=dep_id, process="gone-host:4242", state="open", failures=3,
                                  opened_at=utcnow() - timedelta(seconds=opened_seconds_ago), at=utcnow()))
            s.commit()

    report(1)
    assert deployments_cli(gateway, capsys)["d"]["circuit"] == "open"
    assert deployments_api(gateway)["d"]["circuit_process"] == "gone-host:4242"  # another process's report
    report(routing.COOL_DOWN_SECONDS + 1)
    shown = deployments_cli(gateway, capsys)["d"]
    assert shown["circuit"] == "half-open" and "cool-down has passed" in shown["circuit_detail"]


# D11: disable, enable and delete one deployment or one model -------------------------------------------------

def admin_call(gw: Gateway, method: str, path: str, key: str | None = None, **params: Any) -> httpx.Response:
    return httpx.request(method, f"{gw.url}/api/v1/gateway{path}", headers=bearer(key or gw.admin_key),
                         params=params, timeout=10)


def test_a_disabled_deployment_is_skipped_with_a_reason(gateway: Gateway, upstreams: Callable[..., Upstream],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    one, two = upstreams("one"), upstreams("two")
    register(gateway.db, "m", deployment("first", one.url, priority=1), deployment("second", two.url, priority=2))
    assert admin_call(gateway, "POST", "/deployments/first/disable", key=gateway.key).status_code == 403
    r = admin_call(gateway, "POST", "/deployments/first/disable")
    assert r.status_code == 200 and r.json()["enabled"] is False
    answered = post(gateway)
    assert answered.headers["x-sovstack-deployment"] == "second" and answered.headers["x-sovstack-tries"] == "1"
    assert admin_call(gateway, "POST", "/deployments/second/disable").status_code == 200
    refused = post(gateway)
    assert refused.status_code == 403 and "disabled by an admin" in refused.json()["error"]["message"]
    assert httpx.get(f"{gateway.url}/v1/models", headers=bearer(gateway.key), timeout=10).json()["data"] == []
    assert run([*home(gateway), "gateway", "enable-deployment", "first"]) == 0
    assert post(gateway).headers["x-sovstack-deployment"] == "first"
    assert run([*home(gateway), "gateway", "disable-deployment", "nowhere"]) == 2
    with gateway.db.session() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("gateway.deployment.%"))).all()
    assert actions.count("gateway.deployment.disable") == 2 and "gateway.deployment.enable" in actions


def test_a_disabled_model_is_hidden_and_refused(gateway: Gateway, upstreams: Callable[..., Upstream],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    assert run([*home(gateway), "gateway", "disable-model", "m"]) == 0
    r = post(gateway)
    assert r.status_code == 404 and "disabled" in r.json()["error"]["message"]
    assert httpx.get(f"{gateway.url}/v1/models", headers=bearer(gateway.key), timeout=10).json()["data"] == []
    models = httpx.get(f"{gateway.url}/api/v1/gateway/models", headers=bearer(gateway.admin_key), timeout=10).json()
    assert [(m["name"], m["enabled"]) for m in models] == [("m", False)]
    assert admin_call(gateway, "POST", "/models/m/enable").json()["enabled"] is True
    assert post(gateway).status_code == 200
    assert [m["id"] for m in httpx.get(f"{gateway.url}/v1/models", headers=bearer(gateway.key),
                                       timeout=10).json()["data"]] == ["m"]


def test_deleting_keeps_usage_and_a_model_with_deployments_needs_force(
        gateway: Gateway, upstreams: Callable[..., Upstream], capsys: pytest.CaptureFixture[str]) -> None:
    up = upstreams("up", "500")
    register(gateway.db, "m", deployment("a", up.url), deployment("b", up.url))
    for _ in range(routing.FAILURES_TO_OPEN):
        post(gateway)
    gateway.app.state.circuits.flush()
    assert admin_call(gateway, "DELETE", "/deployments/a", key=gateway.key).status_code == 403
    assert admin_call(gateway, "DELETE", "/deployments/a").json() == {"deleted": "a"}
    assert set(deployments_api(gateway)) == {"b"}
    r = admin_call(gateway, "DELETE", "/models/m")
    assert r.status_code == 409 and "--force" in r.json()["error"]["message"]
    assert run([*home(gateway), "gateway", "delete-model", "m"]) == 2
    assert "still has deployments (b)" in capsys.readouterr().err
    assert run([*home(gateway), "gateway", "delete-model", "m", "--force"]) == 0
    assert "with its deployments b" in capsys.readouterr().out
    with gateway.db.session() as s:
        usage = s.scalars(select(Usage)).all()
        assert len(usage) == routing.FAILURES_TO_OPEN and {u.model for u in usage} == {"m"}
        assert s.scalars(select(CircuitReport)).all() == []
        assert audit.verify(s).ok
    assert post(gateway).status_code == 404
    register(gateway.db, "m", deployment("a", upstreams("again").url))  # the names are free again
    assert post(gateway).status_code == 200
    report = httpx.get(f"{gateway.url}/api/v1/gateway/usage?by=deployment", headers=bearer(gateway.admin_key),
                       timeout=10)
    assert report.status_code == 200 and {r["group"] for r in report.json()["rows"]} >= {"a"}


def test_the_migration_keeps_deployments_and_never_reuses_their_ids(tmp_path: Path) -> None:
    """0010 rebuilds gateway_deployments on SQLite; a rebuild of gateway_models would cascade to every deployment."""
    from alembic import command
    from sqlalchemy import text

    from sovstack.core.db import Database
    from tests.conftest import SECRET

    db = Database(Settings(home=tmp_path, environment="test", secret_key=SECRET,
                           database_url=f"sqlite:///{tmp_path}/old.db"))
    command.upgrade(db._alembic(), "0008_authz")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO parties (id, name, kinds, jurisdiction, ultimate_parent, parent_jurisdiction, "
                          "website, notes, created_at) VALUES (1, 'P', '[]', 'IN', '', 'IN', '', '', '2026-01-01')"))
        conn.execute(text("INSERT INTO gateway_models (id, name, description, language_routing, created_at) "
                          "VALUES (1, 'm', '', 0, '2026-01-01')"))
        conn.execute(text(INSERT_DEPLOYMENT.format(id_col="id, ", id_val="7, ", name="d")))
    command.upgrade(db._alembic(), "head")
    with db.engine.begin() as conn:
        assert conn.execute(text("SELECT id, name, enabled FROM gateway_deployments")).all() == [(7, "d", 1)]
        assert conn.execute(text("SELECT enabled FROM gateway_models")).scalar_one() == 1
        conn.execute(text("DELETE FROM gateway_deployments"))
        conn.execute(text(INSERT_DEPLOYMENT.format(id_col="", id_val="", name="e")))
        assert conn.execute(text("SELECT id FROM gateway_deployments")).scalar_one() == 8
    command.downgrade(db._alembic(), "0008_authz")
    with db.engine.begin() as conn:
        assert conn.execute(text("SELECT id, name FROM gateway_deployments")).all() == [(8, "e")]
    db.dispose()


INSERT_DEPLOYMENT = (
    "INSERT INTO gateway_deployments ({id_col}name, model_id, backend, base_url, upstream_model, api_key_encrypted, "
    "hosting_jurisdiction, operator_id, developer_id, licence, open_weights, languages, context_length, price_in, "
    "price_out, priority, weight, timeout_seconds, withdrawn, withdrawn_reason, created_at) VALUES ({id_val}'{name}', "
    "1, 'openai', 'http://x', 'u', '', 'IN', 1, 1, 'l', 0, '[]', 1, 0, 0, 1, 1, 1, 0, '', '2026-01-01')")
