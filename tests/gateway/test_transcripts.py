"""Prompts and completions are kept only for organisations that opted in, and only until they expire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy import select, update

from sovstack.core import identity
from sovstack.core.base import utcnow
from sovstack.core.context import unit_of_work
from sovstack.core.schemas import MembershipCreate, OrganisationCreate
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
