"""Prompts and completions are kept only for organisations that opted in, and only until they expire."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from sovstack.cli import run
from sovstack.core import identity
from sovstack.core.base import utcnow
from sovstack.core.context import unit_of_work
from sovstack.core.schemas import MembershipCreate, OrganisationCreate, UserCreate
from sovstack.core.tables import AuditEvent, User
from sovstack.gateway import service
from sovstack.gateway.schemas import OrgLoggingSet
from sovstack.gateway.tables import Transcript
from tests.conftest import make_key
from tests.gateway.conftest import OPERATOR, Gateway, deployment, register
from tests.gateway.upstream import Upstream

SECRET_PROMPT = "my confidential question about the budget"


def _org_key(gw: Gateway, name: str) -> tuple[int, str]:
    with gw.db.session() as s, unit_of_work(s, OPERATOR):
        org = identity.create_organisation(s, OPERATOR, OrganisationCreate(name=name, kind="government",
                                                                           jurisdiction="IN"))
        user_id = s.scalars(select(User.id).where(User.email == "dev@test.example")).one()
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user_id, organisation_id=org.id,
                                                              role="member"))
        org_id = org.id
    return org_id, make_key(gw.db, user_id, ["read", "gateway"], organisation_id=org_id)


def _chat(gw: Gateway, key: str, stream: bool = False) -> None:
    body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": SECRET_PROMPT}]}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status_code == 200
        r.read()


def test_only_opted_in_organisations_keep_transcripts(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    kept_org, kept_key = _org_key(gateway, "Opted In Ministry")
    _other_org, other_key = _org_key(gateway, "Default Ministry")
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_org_logging(s, OPERATOR, kept_org, OrgLoggingSet(enabled=True, retention_days=7))
    _chat(gateway, kept_key)
    _chat(gateway, kept_key, stream=True)
    _chat(gateway, other_key)
    with gateway.db.session() as s:
        rows = s.scalars(select(Transcript).order_by(Transcript.id)).all()
        assert [r.organisation_id for r in rows] == [kept_org, kept_org]
        assert SECRET_PROMPT in rows[0].request and rows[0].response == "hello from d"
        assert rows[1].response == "part0 part1 part2 "
        assert timedelta(days=6) < rows[0].expires_at - utcnow() <= timedelta(days=7)
        assert all(SECRET_PROMPT not in e.detail for e in s.scalars(select(AuditEvent)))


def test_expired_transcripts_are_purged(gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    org, key = _org_key(gateway, "Opted In Ministry")
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_org_logging(s, OPERATOR, org, OrgLoggingSet(enabled=True, retention_days=1))
    _chat(gateway, key)
    with gateway.db.session() as s:
        s.execute(update(Transcript).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    _chat(gateway, key)
    with gateway.db.session() as s:
        assert len(s.scalars(select(Transcript)).all()) == 1


def test_members_cannot_opt_their_organisation_in(gateway: Gateway) -> None:
    org, _ = _org_key(gateway, "Some Ministry")
    with gateway.db.session() as s:
        user_id = s.scalars(select(User.id).where(User.email == "dev@test.example")).one()
    key = make_key(gateway.db, user_id, ["read", "write", "gateway"], organisation_id=org)
    r = httpx.put(f"{gateway.url}/api/v1/gateway/organisations/{org}/logging", timeout=10,
                  json={"enabled": True, "retention_days": 30}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and "org_admin" in r.json()["error"]["message"]


def _org_admin_key(gw: Gateway, org: int) -> str:
    with gw.db.session() as s, unit_of_work(s, OPERATOR):
        admin = identity.create_user(s, OPERATOR, UserCreate(email="steward@test.example", name="Steward"))
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=admin.id, organisation_id=org,
                                                              role="org_admin"))
        admin_id = admin.id
    return make_key(gw.db, admin_id, ["read", "write"], organisation_id=org)


def test_org_admins_read_and_purge_their_transcripts_and_each_read_is_audited(
        gateway: Gateway, upstreams: Callable[..., Upstream]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    org, member_key = _org_key(gateway, "Opted In Ministry")
    other_org, _ = _org_key(gateway, "Another Ministry")
    with gateway.db.session() as s, unit_of_work(s, OPERATOR):
        service.set_org_logging(s, OPERATOR, org, OrgLoggingSet(enabled=True, retention_days=7))
    _chat(gateway, member_key)
    _chat(gateway, member_key)
    steward = {"Authorization": f"Bearer {_org_admin_key(gateway, org)}"}
    url = f"{gateway.url}/api/v1/gateway/organisations/{org}/transcripts"

    r = httpx.get(url, headers=steward, params={"limit": 1}, timeout=10)
    assert r.status_code == 200, r.text
    [one] = r.json()
    assert SECRET_PROMPT in one["request"] and one["response"] == "hello from d" and one["model"] == "m"
    assert len(httpx.get(url, headers=steward, timeout=10).json()) == 2
    with gateway.db.session() as s:
        reads = s.scalars(select(AuditEvent).where(AuditEvent.action == "gateway.transcripts.read")).all()
        assert len(reads) == 2 and reads[0].actor.startswith("steward@test.example")
        assert SECRET_PROMPT not in reads[0].detail and str(one["id"]) in reads[0].detail

    member = {"Authorization": f"Bearer {member_key}"}
    assert httpx.get(url, headers=member, timeout=10).status_code == 403
    other = f"{gateway.url}/api/v1/gateway/organisations/{other_org}/transcripts"
    assert httpx.get(other, headers=steward, timeout=10).status_code == 403
    bad = httpx.get(url, headers=steward, params={"limit": 0}, timeout=10)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"

    with gateway.db.session() as s:  # an expired transcript is never shown, even before it is purged
        s.execute(update(Transcript).where(Transcript.id == one["id"]).values(expires_at=utcnow()))
        s.commit()
    assert [t["id"] for t in httpx.get(url, headers=steward, timeout=10).json()] != [one["id"]]
    assert len(httpx.get(url, headers=steward, timeout=10).json()) == 1

    r = httpx.delete(url, headers=steward, timeout=10)
    assert r.status_code == 200 and r.json() == {"deleted": 2}
    assert httpx.get(url, headers=steward, timeout=10).json() == []


def test_transcripts_from_the_cli(gateway: Gateway, upstreams: Callable[..., Upstream],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    register(gateway.db, "m", deployment("d", upstreams("d").url))
    org, key = _org_key(gateway, "Opted In Ministry")
    home = ["--home", str(gateway.app.state.settings.home)]
    assert run([*home, "gateway", "logging", "Opted In Ministry", "--enable", "--retention-days", "3"]) == 0
    _chat(gateway, key)
    capsys.readouterr()
    assert run([*home, "gateway", "transcripts", "Opted In Ministry", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and SECRET_PROMPT in rows[0]["request"] and rows[0]["organisation_id"] == org
    assert run([*home, "gateway", "transcripts", "Opted In Ministry", "--purge"]) == 0
    assert "1 transcripts deleted" in capsys.readouterr().out
    assert run([*home, "gateway", "transcripts", "No Such Ministry"]) == 2
