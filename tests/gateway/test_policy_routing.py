"""Routing by sovereignty policy, classification floors, cut-offs, language, quotas and the catalogue."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import yaml
from sqlalchemy import select

from sovstack.cli import run
from sovstack.core.context import unit_of_work
from sovstack.core.tables import AuditEvent, Organisation
from sovstack.gateway import service
from sovstack.gateway.schemas import BudgetSet, KeyPolicySet
from sovstack.gateway.tables import Counter, Deployment
from tests.conftest import make_key
from tests.gateway.conftest import OPERATOR, Gateway, deployment, fresh_minute, register
from tests.gateway.upstream import Upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}


def post(gw: Gateway, key: str | None = None, body: dict[str, object] = CHAT, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key or gw.key}", **headers})


def two_sites(gw: Gateway, upstreams: Callable[..., Upstream]) -> tuple[Upstream, Upstream]:
    foreign, domestic = upstreams("foreign"), upstreams("domestic")
    register(gw.db, "m",
             deployment("frontier-us-parent", foreign.url, operator="Hyper India", developer="Frontier Labs",
                        priority=1, open_weights=False, licence="proprietary"),
             deployment("desi", domestic.url, priority=2))
    return foreign, domestic


def test_sensitive_requests_stay_with_domestic_operators(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    foreign, domestic = two_sites(gateway, upstreams)
    assert post(gateway).headers["x-sovstack-deployment"] == "frontier-us-parent"
    r = post(gateway, **{"X-Sovstack-Classification": "sensitive"})
    assert r.headers["x-sovstack-deployment"] == "desi" and r.headers["x-sovstack-classification"] == "sensitive"
    assert len(foreign.received) == 1


def test_refusal_lists_every_candidate_and_is_audited(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("frontier", upstreams("f").url, operator="Hyper India"))
    r = post(gateway, **{"X-Sovstack-Classification": "sensitive"})
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["type"] == "permission_error" and "candidates refused" in err["message"]
    assert any("frontier:" in x and "CLOUD Act" in x for x in err["reasons"])
    with gateway.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.chat")).all()
        assert [e.outcome for e in events] == ["refused"]


def test_key_floor_cannot_be_lowered_by_a_header(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    two_sites(gateway, upstreams)
    prefix = gateway.key.split("_")[0]
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_key_policy(s, OPERATOR, prefix, KeyPolicySet(default_classification="sensitive",
                                                                 floor_classification="sensitive"))
    r = post(gateway, **{"X-Sovstack-Classification": "open"})
    assert r.headers["x-sovstack-classification"] == "sensitive" and r.headers["x-sovstack-deployment"] == "desi"


def test_cutoff_moves_traffic_at_once_and_restore_brings_it_back(gateway: Gateway,
                                                                 upstreams: Callable[..., Upstream],
                                                                 capsys: object) -> None:
    two_sites(gateway, upstreams)
    home = ["--home", str(gateway.app.state.settings.home)]
    assert run([*home, "gateway", "cutoff", "--jurisdiction", "US", "--reason", "export licence revoked"]) == 0
    r = post(gateway)
    assert r.headers["x-sovstack-deployment"] == "desi" and r.headers["x-sovstack-tries"] == "1"
    with gateway.db.session() as s:
        dep = s.scalars(select(Deployment).where(Deployment.name == "frontier-us-parent")).one()
        assert dep.withdrawn and dep.withdrawn_reason == "export licence revoked"
    models = httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {gateway.key}"}).json()
    assert [m["id"] for m in models["data"]] == ["m"]
    assert run([*home, "gateway", "restore", "--jurisdiction", "US"]) == 0
    assert post(gateway).headers["x-sovstack-deployment"] == "frontier-us-parent"
    assert run([*home, "gateway", "cutoff", "--party", "Bharat Models"]) == 0
    assert post(gateway).headers["x-sovstack-deployment"] == "frontier-us-parent"


def test_language_routing_prefers_tagged_deployments(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    en, hi = upstreams("en"), upstreams("hi")
    register(gateway.db, "m",
             deployment("english", en.url, priority=1, languages=[{"code": "en", "tier": "high"}]),
             deployment("hindi", hi.url, priority=5, languages=[{"code": "hi", "tier": "high"}]),
             language_routing=True)
    hindi = {"model": "m", "messages": [{"role": "user", "content": "नमस्ते, आज मौसम कैसा रहेगा? कृपया बताइए"}]}
    r = post(gateway, body=hindi)
    assert r.headers["x-sovstack-deployment"] == "hindi" and r.headers["x-sovstack-language"] == "hi"
    r = post(gateway, body={"model": "m", "messages": [{"role": "user", "content": "What is the weather today?"}]})
    assert r.headers["x-sovstack-deployment"] == "english" and r.headers["x-sovstack-language"] == "en"


def test_requests_per_minute_limit_says_when_it_resets(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_key_policy(s, OPERATOR, gateway.key.split("_")[0], KeyPolicySet(requests_per_minute=2))
    fresh_minute()
    codes = [post(gateway).status_code for _ in range(3)]
    r = post(gateway)
    assert codes[:2] == [200, 200] and r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 61 and "resets in" in r.json()["error"]["message"]


def test_org_token_budget_is_enforced(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        org = Organisation(name="Budget Org", kind="startup", jurisdiction="IN", description="")
        s.add(org)
        s.flush()
        service.set_budget(s, OPERATOR, BudgetSet(organisation_id=org.id, tokens=30, period="day"))
        org_id = org.id
    user_id = _user_id(gateway)
    from sovstack.core import identity
    from sovstack.core.schemas import MembershipCreate

    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user_id, organisation_id=org_id, role="member"))
    key = make_key(gateway.db, user_id, ["read", "gateway"], organisation_id=org_id)
    assert post(gateway, key).status_code == 200  # 18 tokens
    assert post(gateway, key).status_code == 200  # 36 tokens: over budget from now on
    r = post(gateway, key)
    assert r.status_code == 429 and "token budget" in r.json()["error"]["message"]
    with gateway.db.session() as s:
        assert s.scalars(select(Counter.count).where(Counter.name == f"tokens:{org_id}")).one() == 36


def _user_id(gw: Gateway) -> int:
    from sovstack.core.tables import User

    with gw.db.session() as s:
        return s.scalars(select(User.id).where(User.email == "dev@test.example")).one()


def test_key_without_gateway_scope_is_refused(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    key = make_key(gateway.db, _user_id(gateway), ["read", "write"])
    r = post(gateway, key)
    assert r.status_code == 403 and "gateway scope" in r.json()["error"]["message"]


def test_apply_is_idempotent_and_keys_are_encrypted(gateway: Gateway, tmp_path: Path,
                                                    capsys: object) -> None:
    catalogue = {"models": [{"name": "m", "deployments": [
        deployment("d", "http://127.0.0.1:9/v1", api_key="upstream-secret-123")]}]}
    file = tmp_path / "models.yaml"
    file.write_text(yaml.safe_dump(catalogue))
    home = ["--home", str(gateway.app.state.settings.home)]
    assert run([*home, "gateway", "apply", str(file), "--json"]) == 0
    assert run([*home, "gateway", "apply", str(file), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()  # type: ignore[attr-defined]
    first, second = yaml.safe_load(out[0]), yaml.safe_load(out[1])
    assert first["created"] == ["model:m", "deployment:d"] and second["created"] == second["updated"] == []
    catalogue["models"][0]["deployments"][0]["priority"] = 7
    file.write_text(yaml.safe_dump(catalogue))
    assert run([*home, "gateway", "apply", str(file), "--json"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["updated"] == ["deployment:d"]  # type: ignore[attr-defined]
    with gateway.db.session() as s:
        dep = s.scalars(select(Deployment)).one()
        assert dep.priority == 7 and "upstream-secret-123" not in dep.api_key_encrypted
        events = " ".join(e.detail for e in s.scalars(select(AuditEvent)))
        assert "upstream-secret-123" not in events
    listed = httpx.get(f"{gateway.url}/api/v1/gateway/deployments",
                       headers={"Authorization": f"Bearer {gateway.admin_key}"})
    assert "upstream-secret-123" not in listed.text and listed.json()[0]["has_api_key"] is True


def test_upstream_key_is_sent_to_the_upstream(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    up = upstreams("d")
    register(gateway.db, "m", deployment("d", up.url, api_key="upstream-secret-123"))
    assert post(gateway).status_code == 200
    assert up.headers[-1]["authorization"] == "Bearer upstream-secret-123"


def test_bad_catalogue_names_the_field(gateway: Gateway, tmp_path: Path, capsys: object) -> None:
    file = tmp_path / "models.yaml"
    file.write_text(yaml.safe_dump({"models": [{"name": "m", "deployments": [
        deployment("d", "http://x/v1", operator="Nobody Inc")]}]}))
    assert run(["--home", str(gateway.app.state.settings.home), "gateway", "apply", str(file)]) == 2
    assert "unknown operator party 'Nobody Inc'" in capsys.readouterr().err  # type: ignore[attr-defined]
    with gateway.db.session() as s:
        assert s.scalars(select(Deployment)).all() == []


def test_routing_on_model_origin_and_open_weights(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    closed, open_ = upstreams("closed"), upstreams("open")
    register(gateway.db, "m",
             deployment("foreign-closed", closed.url, developer="Frontier Labs", open_weights=False,
                        licence="proprietary", priority=1),
             deployment("domestic-open", open_.url, priority=2))
    from sovstack.core import policy

    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        doc = policy.current(s, "IN")
        doc.levels["restricted"].developer_jurisdictions = ["IN"]
        doc.levels["restricted"].require_open_weights = True
        policy.save(s, OPERATOR, doc)
    assert post(gateway).headers["x-sovstack-deployment"] == "foreign-closed"  # open data: anything goes
    r = post(gateway, **{"X-Sovstack-Classification": "restricted"})
    assert r.headers["x-sovstack-deployment"] == "domestic-open" and r.headers["x-sovstack-tries"] == "1"


def test_key_owner_may_tighten_but_not_loosen_own_policy(gateway: Gateway) -> None:
    prefix = gateway.key.split("_")[0]
    owner_key = make_key(gateway.db, _user_id(gateway), ["read", "write", "gateway"])
    url = f"{gateway.url}/api/v1/gateway/keys/{prefix}/policy"
    headers = {"Authorization": f"Bearer {owner_key}"}
    tighter = {"default_classification": "restricted", "floor_classification": "restricted",
               "requests_per_minute": 10}
    assert httpx.put(url, json=tighter, headers=headers, timeout=10).status_code == 200
    for looser in ({**tighter, "requests_per_minute": None}, {**tighter, "requests_per_minute": 50},
                   {**tighter, "floor_classification": "open"}):
        assert httpx.put(url, json=looser, headers=headers, timeout=10).status_code == 403, looser
    admin = {"Authorization": f"Bearer {gateway.admin_key}"}
    assert httpx.put(url, json={**tighter, "requests_per_minute": None}, headers=admin, timeout=10).status_code == 200


def test_oversize_body_is_refused_in_openai_shape(gateway: Gateway) -> None:
    limit = gateway.db.settings.gateway_max_body_bytes
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * (limit + 1)}]}
    r = post(gateway, body=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert str(limit) in r.json()["error"]["message"]


def test_a_prompt_with_a_large_image_is_not_refused_by_the_api_body_limit(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    """D13: the API's 1 MiB limit is for management calls; a 1.5 MB image inlined in a prompt goes through."""
    up = upstreams("vision")
    register(gateway.db, "m", deployment("vision", up.url))
    image = "data:image/png;base64," + "A" * 1_500_000
    assert len(image) > gateway.db.settings.max_body_bytes
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": image}}]}]}
    r = post(gateway, body=body)
    assert r.status_code == 200, r.text
    assert up.received[-1]["messages"][0]["content"][1]["image_url"]["url"] == image
    # The management API keeps its own, smaller limit.
    r = httpx.post(f"{gateway.url}/api/v1/gateway/models", timeout=30, content=b"{" + b" " * 1_100_000 + b"}",
                   headers={"Authorization": f"Bearer {gateway.admin_key}", "Content-Type": "application/json"})
    assert r.status_code == 413


def test_oversize_body_without_a_declared_length_is_refused_in_openai_shape(gateway: Gateway) -> None:
    def chunks() -> Iterator[bytes]:  # sent chunked: no Content-Length for the limit to read up front
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(gateway.db.settings.gateway_max_body_bytes // 65536 + 1):
            yield b"x" * 65536
        yield b'"}]}'

    r = httpx.post(f"{gateway.url}/v1/chat/completions", content=chunks(), timeout=30,
                   headers={"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_v1_calls_are_counted_and_carry_the_security_headers(gateway: Gateway,
                                                             upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    r = post(gateway)
    assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    metrics = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {gateway.admin_key}"},
                        timeout=10).text
    assert 'route="/v1/chat/completions",status="200"' in metrics
