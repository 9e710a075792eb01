"""The console's Limits page: an organisation's admins set what binds every key of its members."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovstack.core import identity, parties
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import MembershipCreate, OrganisationCreate, PartyCreate
from sovstack.core.tables import AuditEvent
from sovstack.gateway.tables import OrgLogging, OrgPolicy, OrgResponses
from tests.conftest import make_user
from tests.gateway.conftest import deployment, register
from tests.gateway.test_pages import csrf_of, post_login

SYSTEM = Principal.system("test")


@pytest.fixture
def orgs(db: Database) -> dict[str, Any]:
    boss, member = make_user(db, "boss@test.example"), make_user(db, "member@test.example")
    with db.session() as s, unit_of_work(s, SYSTEM):
        ids = {}
        for name in ("Ministry", "Institute", "Elsewhere"):
            ids[name] = identity.create_organisation(s, SYSTEM, OrganisationCreate(
                name=name, kind="government", jurisdiction="IN")).id
        for user, org, role in ((boss, "Ministry", "org_admin"), (member, "Ministry", "member"),
                                (member, "Institute", "member")):
            identity.add_membership(s, SYSTEM, MembershipCreate(user_id=user["id"], organisation_id=ids[org],
                                                                role=role))
    return {"boss": boss, "member": member, **ids}


def _form(token: str, **values: str) -> dict[str, str]:
    return {"csrf_token": token, "floor_classification": "open", "requests_per_minute_per_person": "",
            "tokens_per_person": "", "tokens_period": "month", "retention_days": "30", **values}


def test_org_admin_sets_the_limits_of_their_organisation(client: TestClient, db: Database,
                                                        orgs: dict[str, Any]) -> None:
    assert post_login(client, orgs["boss"]["email"], orgs["boss"]["password"]).status_code == 303
    page = client.get("/gateway/limits")
    assert page.status_code == 200 and "Ministry" in page.text
    assert "Institute" not in page.text and "Elsewhere" not in page.text
    assert f'action="/gateway/limits/{orgs["Ministry"]}"' in page.text
    r = client.post(f"/gateway/limits/{orgs['Ministry']}", follow_redirects=False, data=_form(
        csrf_of(page.text), floor_classification="restricted", requests_per_minute_per_person="5",
        transcripts="1", retention_days="7"))
    assert r.status_code == 303, r.text
    shown = client.get("/gateway/limits").text
    assert "kept 7 days" in shown and '<option value="restricted" selected>' in shown
    with db.session() as s:
        row = s.get(OrgPolicy, orgs["Ministry"])
        assert row is not None and (row.floor_classification, row.requests_per_minute_per_person) == ("restricted", 5)
        logging = s.get(OrgLogging, orgs["Ministry"])
        assert logging is not None and (logging.enabled, logging.retention_days) == (True, 7)
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("gateway.%"))
                          .order_by(AuditEvent.seq)).all()
        assert actions == ["gateway.org_policy", "gateway.logging"]

    bad = client.post(f"/gateway/limits/{orgs['Ministry']}", data=_form(
        csrf_of(shown), requests_per_minute_per_person="0"))
    assert bad.status_code == 422 and "requests_per_minute_per_person" in bad.text
    other = client.post(f"/gateway/limits/{orgs['Elsewhere']}", data=_form(csrf_of(shown)))
    assert other.status_code == 403
    with db.session() as s:
        assert s.get(OrgPolicy, orgs["Elsewhere"]) is None


def test_org_admin_keeps_responses_from_the_limits_page(client: TestClient, db: Database,
                                                       orgs: dict[str, Any]) -> None:
    assert post_login(client, orgs["boss"]["email"], orgs["boss"]["password"]).status_code == 303
    page = client.get("/gateway/limits")
    assert "Responses (<code>previous_response_id</code>)</dt><dd>not kept" in page.text
    r = client.post(f"/gateway/limits/{orgs['Ministry']}", follow_redirects=False, data=_form(
        csrf_of(page.text), stored_responses="1", responses_retention_days="14"))
    assert r.status_code == 303, r.text
    shown = client.get("/gateway/limits").text
    assert "previous_response_id</code>)</dt><dd><span class=\"badge badge-warn\">kept 14 days" in shown
    with db.session() as s:
        row = s.get(OrgResponses, orgs["Ministry"])
        assert row is not None and row.retention_days == 14
    r = client.post(f"/gateway/limits/{orgs['Ministry']}", follow_redirects=False, data=_form(csrf_of(shown)))
    assert r.status_code == 303
    with db.session() as s:
        assert s.get(OrgResponses, orgs["Ministry"]) is None
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.action == "gateway.stored_responses")).all()
        assert len(actions) == 2


def test_member_reads_the_limits_but_cannot_change_them(client: TestClient, db: Database,
                                                       orgs: dict[str, Any]) -> None:
    assert post_login(client, orgs["member"]["email"], orgs["member"]["password"]).status_code == 303
    page = client.get("/gateway/limits")
    assert "Ministry" in page.text and "Institute" in page.text and "Elsewhere" not in page.text
    assert 'action="/gateway/limits/' not in page.text
    r = client.post(f"/gateway/limits/{orgs['Ministry']}", data=_form(csrf_of(page.text)))
    assert r.status_code == 403 and "org_admin" in r.text
    with db.session() as s:
        assert s.get(OrgPolicy, orgs["Ministry"]) is None


def test_playground_asks_which_of_the_users_organisations_a_call_is_for(client: TestClient, db: Database,
                                                                       orgs: dict[str, Any]) -> None:
    with db.session() as s, unit_of_work(s, SYSTEM):
        for name, kind in (("Desi Cloud", "model_host"), ("Bharat Models", "model_developer")):
            parties.create_party(s, SYSTEM, PartyCreate(name=name, kinds=[kind], jurisdiction="IN"))
    register(db, "m", deployment("d", "http://127.0.0.1:9/v1"))
    assert post_login(client, orgs["member"]["email"], orgs["member"]["password"]).status_code == 303
    page = client.get("/gateway/playground").text
    assert 'id="pg-organisation"' in page
    assert f'<option value="{orgs["Ministry"]}">Ministry</option>' in page
    assert f'<option value="{orgs["Institute"]}">Institute</option>' in page and "Elsewhere" not in page
