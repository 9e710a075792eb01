"""An organisation's limits bind every key its members can make: a new key is no way out of the floor, the
per-person rate limit, the token budgets or transcript logging (gateway/limits.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sovstack.cli import run
from sovstack.core import identity
from sovstack.core.context import unit_of_work
from sovstack.core.schemas import MembershipCreate, OrganisationCreate
from sovstack.core.tables import AuditEvent
from sovstack.gateway import service
from sovstack.gateway.schemas import BudgetSet, KeyPolicySet
from sovstack.gateway.tables import Counter, Transcript, Usage
from tests.conftest import make_key, make_user
from tests.gateway.conftest import OPERATOR, Gateway, deployment, fresh_minute, register
from tests.gateway.upstream import Upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "a question for the ministry"}]}


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def chat(gw: Gateway, key: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=bearer(key, **headers), timeout=30)


def organisation(gw: Gateway, name: str, *members: tuple[int, str]) -> int:
    with gw.db.session() as s, unit_of_work(s, OPERATOR):
        org = identity.create_organisation(s, OPERATOR, OrganisationCreate(name=name, kind="government",
                                                                           jurisdiction="IN"))
        for user_id, role in members:
            identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user_id, organisation_id=org.id, role=role))
        return org.id


def join(gw: Gateway, user_id: int, org: int, role: str = "member") -> None:
    with gw.db.session() as s, unit_of_work(s, OPERATOR):
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user_id, organisation_id=org, role=role))


def new_key(gw: Gateway, key: str, **body: Any) -> str:
    """What a member types to escape the limits: a fresh key of their own, naming no organisation."""
    r = httpx.post(f"{gw.url}/api/v1/keys", json={"name": "another", "scopes": ["gateway"], **body},
                   headers=bearer(key), timeout=10)
    assert r.status_code == 201, r.text
    secret: str = r.json()["key"]
    return secret


def set_policy(gw: Gateway, key: str, org: int, **policy: Any) -> httpx.Response:
    return httpx.put(f"{gw.url}/api/v1/gateway/organisations/{org}/policy", json=policy, headers=bearer(key),
                     timeout=10)


@pytest.fixture
def ministry(gateway: Gateway, upstreams: Callable[..., Upstream]) -> dict[str, Any]:
    """An organisation with an admin and a member, the member's first key (made for it) and a model."""
    register(gateway.db, "m", deployment("desi", upstreams("desi").url))
    boss, member = make_user(gateway.db, "boss@test.example"), make_user(gateway.db, "meera@test.example")
    org = organisation(gateway, "Ministry", (boss["id"], "org_admin"), (member["id"], "member"))
    return {"org": org, "member": member, "admin_key": make_key(gateway.db, boss["id"], ["read", "write"]),
            "key": make_key(gateway.db, member["id"], ["read", "write", "gateway"], organisation_id=org)}


def test_new_keys_share_one_persons_rate_limit(gateway: Gateway, ministry: dict[str, Any]) -> None:
    assert set_policy(gateway, ministry["admin_key"], ministry["org"], requests_per_minute_per_person=3).status_code \
        == 200
    second, third = new_key(gateway, ministry["key"]), new_key(gateway, ministry["key"])
    fresh_minute()
    assert [chat(gateway, k).status_code for k in (ministry["key"], second, third)] == [200, 200, 200]
    for key in (second, third, ministry["key"]):
        r = chat(gateway, key)
        assert r.status_code == 429, r.text
        assert "3 requests per minute per person, across all their keys" in r.json()["error"]["message"]


def test_concurrent_calls_on_two_keys_cannot_pass_the_per_person_limit_together(
        gateway: Gateway, ministry: dict[str, Any]) -> None:
    assert set_policy(gateway, ministry["admin_key"], ministry["org"], requests_per_minute_per_person=4).status_code \
        == 200
    keys = [new_key(gateway, ministry["key"]), new_key(gateway, ministry["key"])]
    fresh_minute()
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda i: chat(gateway, keys[i % 2]).status_code, range(12)))
    assert sorted(codes) == [200] * 4 + [429] * 8


def test_new_keys_spend_the_organisations_budget_and_the_persons_share(
        gateway: Gateway, ministry: dict[str, Any]) -> None:
    org = ministry["org"]
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_budget(s, OPERATOR, BudgetSet(organisation_id=org, tokens=50, period="day"))
    assert set_policy(gateway, ministry["admin_key"], org, tokens_per_person=30, tokens_period="day").status_code \
        == 200
    second = new_key(gateway, ministry["key"])
    assert chat(gateway, ministry["key"]).status_code == 200  # 18 tokens
    assert chat(gateway, second).status_code == 200  # 36: past the person's share of 30
    r = chat(gateway, new_key(gateway, ministry["key"]))
    assert r.status_code == 429 and "meera@test.example's share of organisation" in r.json()["error"]["message"]

    colleague = make_user(gateway.db, "ravi@test.example")
    join(gateway, colleague["id"], org)
    theirs = make_key(gateway.db, colleague["id"], ["gateway"])
    assert chat(gateway, theirs).status_code == 200  # a share is per person: 54 tokens for the organisation
    r = chat(gateway, theirs)
    assert r.status_code == 429 and "the organisation's token budget of 50" in r.json()["error"]["message"]
    with gateway.db.session() as s:
        counts = dict(s.execute(select(Counter.name, Counter.count).where(Counter.name.like("tokens:%"))).all())
        assert counts == {f"tokens:{org}": 54, f"tokens:{org}:person:{ministry['member']['id']}": 36,
                          f"tokens:{org}:person:{colleague['id']}": 18}
        assert set(s.scalars(select(Usage.organisation_id)).all()) == {org}


def test_the_organisations_floor_and_transcript_logging_bind_a_new_key(
        gateway: Gateway, ministry: dict[str, Any]) -> None:
    org, boss = ministry["org"], ministry["admin_key"]
    assert set_policy(gateway, boss, org, floor_classification="sensitive").status_code == 200
    r = httpx.put(f"{gateway.url}/api/v1/gateway/organisations/{org}/logging", headers=bearer(boss), timeout=10,
                  json={"enabled": True, "retention_days": 7})
    assert r.status_code == 200
    second = new_key(gateway, ministry["key"])
    r = chat(gateway, second, **{"X-Sovstack-Classification": "open"})
    assert r.status_code == 200 and r.headers["x-sovstack-classification"] == "sensitive"
    with gateway.db.session() as s:
        kept = s.scalars(select(Transcript)).all()
        assert [(t.organisation_id, t.key_prefix) for t in kept] == [(org, second.split("_")[0])]
        assert "a question for the ministry" in kept[0].request


def test_a_key_may_be_stricter_than_its_organisation_never_looser(gateway: Gateway,
                                                                  ministry: dict[str, Any]) -> None:
    org = ministry["org"]
    loose = new_key(gateway, ministry["key"])
    prefix = loose.split("_")[0]
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):  # looser than what the organisation sets next
        service.set_key_policy(s, OPERATOR, prefix, KeyPolicySet(requests_per_minute=100))
    assert set_policy(gateway, ministry["admin_key"], org, floor_classification="restricted",
                      requests_per_minute_per_person=5).status_code == 200

    url = f"{gateway.url}/api/v1/gateway/keys/{prefix}/policy"
    for body, field in (({"floor_classification": "open", "requests_per_minute": 5}, "floor_classification"),
                        ({"requests_per_minute": 50}, "requests_per_minute")):
        for who in (ministry["key"], gateway.admin_key):  # not even a deployment admin
            r = httpx.put(url, json=body, headers=bearer(who), timeout=10)
            assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text

    strict = new_key(gateway, ministry["key"])
    r = httpx.put(f"{gateway.url}/api/v1/gateway/keys/{strict.split('_')[0]}/policy", headers=bearer(ministry["key"]),
                  json={"default_classification": "sensitive", "floor_classification": "sensitive",
                        "requests_per_minute": 2}, timeout=10)
    assert r.status_code == 200, r.text
    fresh_minute()
    assert chat(gateway, loose, **{"X-Sovstack-Classification": "open"}).headers["x-sovstack-classification"] \
        == "restricted"  # the key's stored floor is open; the organisation's binds
    assert [chat(gateway, strict).headers.get("x-sovstack-classification") for _ in range(2)] == ["sensitive"] * 2
    r = chat(gateway, strict)
    assert r.status_code == 429 and f"for key {strict.split('_')[0]}" in r.json()["error"]["message"]
    # Four attempts so far count against the person's 5, the refused one too: the loose key's 100 is no way out.
    assert chat(gateway, loose).status_code == 200
    r = chat(gateway, loose)
    assert r.status_code == 429 and "per person" in r.json()["error"]["message"]


def test_a_member_of_several_organisations_names_the_one_a_call_is_for(
        gateway: Gateway, ministry: dict[str, Any]) -> None:
    member = ministry["member"]
    other = organisation(gateway, "Institute", (member["id"], "member"))
    stranger = organisation(gateway, "Elsewhere")
    key = new_key(gateway, ministry["key"])
    r = chat(gateway, key)
    assert r.status_code == 403 and "x-sovstack-organisation" in r.json()["error"]["message"]
    assert r.json()["error"]["reasons"] == [f"meera@test.example belongs to organisations "
                                            f"{sorted([ministry['org'], other])}"]
    assert chat(gateway, key, **{"X-Sovstack-Organisation": str(other)}).status_code == 200
    assert chat(gateway, key, **{"X-Sovstack-Organisation": str(stranger)}).status_code == 403
    bad = chat(gateway, key, **{"X-Sovstack-Organisation": "Ministry"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-sovstack-organisation"
    # A key made for one organisation cannot call for another.
    r = chat(gateway, ministry["key"], **{"X-Sovstack-Organisation": str(other)})
    assert r.status_code == 403
    with gateway.db.session() as s:
        assert s.scalars(select(Usage.organisation_id)).all() == [other]
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.organisation")).all()
        assert len(refused) == 3 and all(e.actor.startswith("meera@test.example") for e in refused)


def test_a_key_stops_calling_for_an_organisation_its_owner_left(gateway: Gateway, ministry: dict[str, Any]) -> None:
    assert chat(gateway, ministry["key"]).status_code == 200
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        identity.remove_membership(s, OPERATOR, MembershipCreate(user_id=ministry["member"]["id"],
                                                                 organisation_id=ministry["org"], role="member"))
    r = chat(gateway, ministry["key"])
    assert r.status_code == 403 and "no longer counts meera@test.example as a member" in r.json()["error"]["message"]


def test_only_the_organisations_admins_set_its_policy_and_members_may_read_it(
        gateway: Gateway, ministry: dict[str, Any]) -> None:
    org = ministry["org"]
    assert set_policy(gateway, ministry["key"], org, floor_classification="open").status_code == 403
    outsider = make_key(gateway.db, make_user(gateway.db, "out@test.example")["id"], ["read", "write"])
    assert set_policy(gateway, outsider, org, requests_per_minute_per_person=1000).status_code == 403
    r = set_policy(gateway, ministry["admin_key"], org, requests_per_minute_per_person=0)
    assert r.status_code == 422 and r.json()["error"]["field"] == "requests_per_minute_per_person"
    assert set_policy(gateway, ministry["admin_key"], org, floor_classification="restricted").status_code == 200
    url = f"{gateway.url}/api/v1/gateway/organisations/{org}/policy"
    seen = httpx.get(url, headers=bearer(ministry["key"]), timeout=10).json()
    assert seen["floor_classification"] == "restricted" and seen["organisation"] == "Ministry"
    assert httpx.get(url, headers=bearer(outsider), timeout=10).status_code == 403
    with gateway.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.org_policy")).all()
        assert [e.outcome for e in events] == ["refused", "refused", "ok"]


def test_organisation_policy_from_the_cli(gateway: Gateway, ministry: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(gateway.app.state.settings.home)]
    assert run([*home, "gateway", "org-policy", "Ministry", "--floor", "restricted", "--rpm-per-person", "5",
                "--tokens-per-person", "1000", "--period", "day", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["floor_classification"], shown["requests_per_minute_per_person"], shown["tokens_per_person"],
            shown["tokens_period"]) == ("restricted", 5, 1000, "day")
    assert run([*home, "gateway", "limits", "Ministry", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == shown
    assert run([*home, "gateway", "org-policy", "Ministry", "--floor", "secret"]) == 2
    assert run([*home, "gateway", "limits", "Nowhere"]) == 2
    prefix = new_key(gateway, ministry["key"]).split("_")[0]
    assert run([*home, "gateway", "key-policy", prefix, "--floor", "open"]) == 2
    assert "floor is restricted: a key may be stricter, never looser" in capsys.readouterr().err
    assert run([*home, "gateway", "key-policy", prefix, "--rpm", "3"]) == 0
