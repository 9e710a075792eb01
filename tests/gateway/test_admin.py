"""Managing the catalogue: partial key-policy updates (D6), one-line names and keys (D9), circuits shared
between processes (D10), disabling and deleting deployments and models (D11) — issue #15."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from sovstack.cli import run
from sovstack.core.context import unit_of_work
from sovstack.core.tables import User
from sovstack.gateway import service
from sovstack.gateway.schemas import KeyPolicySet
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
        "default_classification": "sensitive", "floor_classification": "restricted", "requests_per_minute": 5}

    url = f"{gateway.url}/api/v1/gateway/keys/{prefix}/policy"
    r = httpx.put(url, json={"floor_classification": "sensitive"}, headers=bearer(gateway.admin_key), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"key_prefix": prefix, "default_classification": "sensitive",
                        "floor_classification": "sensitive", "requests_per_minute": 5}
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
