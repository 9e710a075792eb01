"""Invitations in the console: an org_admin invites and revokes, the invitee accepts or declines, and the
people pages show where else a person works only to deployment admins."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovstack.core import identity
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import MembershipCreate, OrganisationCreate
from sovstack.core.tables import Invitation, Membership
from tests.conftest import make_user
from tests.console.test_pages import csrf_of, post_login

SYSTEM = Principal.system("test")


@pytest.fixture
def world(db: Database) -> dict[str, Any]:
    people = {name: make_user(db, f"{name}@test.example") for name in ("boss", "ana", "eve")}
    with db.session() as s, unit_of_work(s, SYSTEM):
        orgs = {name: identity.create_organisation(s, SYSTEM, OrganisationCreate(
            name=name, kind="academic", jurisdiction="IN")).id for name in ("Org A", "Secret Lab")}
        for who, org, role in (("boss", "Org A", "org_admin"), ("ana", "Secret Lab", "member")):
            identity.add_membership(s, SYSTEM, MembershipCreate(user_id=people[who]["id"], organisation_id=orgs[org],
                                                                role=role))
    return {**people, **orgs}


def sign_in(client: TestClient, person: dict[str, Any]) -> str:
    client.cookies.clear()
    assert post_login(client, person["email"], person["password"]).status_code == 303
    return csrf_of(client.get("/invitations").text)


def test_invite_accept_and_decline_through_the_console(client: TestClient, db: Database,
                                                      world: dict[str, Any]) -> None:
    org = world["Org A"]
    token = sign_in(client, world["boss"])
    page = client.get(f"/organisations/{org}")
    assert f'action="/organisations/{org}/invitations"' in page.text
    assert 'id="member-user"' not in page.text  # no picking people from a list of every user
    for email, role in (("ana@test.example", "steward"), ("eve@test.example", "member")):
        r = client.post(f"/organisations/{org}/invitations", follow_redirects=False,
                        data={"csrf_token": token, "email": email, "role": role, "expires_in_days": "7"})
        assert r.status_code == 303, r.text
    bad = client.post(f"/organisations/{org}/invitations",
                      data={"csrf_token": token, "email": "nope", "role": "member"})
    assert bad.status_code == 422 and 'value="nope"' in bad.text
    listed = client.get(f"/organisations/{org}").text
    assert "ana@test.example" in listed and "eve@test.example" in listed
    with db.session() as s:
        ids = {i.email: i.id for i in s.scalars(select(Invitation))}

    token = sign_in(client, world["eve"])
    mine = client.get("/invitations").text
    assert "Org A" in mine and f"/invitations/{ids['eve@test.example']}/accept" in mine
    assert f"/invitations/{ids['ana@test.example']}/accept" not in mine
    stolen = client.post(f"/invitations/{ids['ana@test.example']}/accept", data={"csrf_token": token})
    assert stolen.status_code == 403 and "was not sent to you" in stolen.text
    r = client.post(f"/invitations/{ids['eve@test.example']}/decline", data={"csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303

    token = sign_in(client, world["ana"])
    r = client.post(f"/invitations/{ids['ana@test.example']}/accept", data={"csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and "steward" in r.headers["location"]
    with db.session() as s:
        roles = {(m.user_id, m.organisation_id, m.role) for m in s.scalars(select(Membership))}
        assert (world["ana"]["id"], org, "steward") in roles
        assert not any(user == world["eve"]["id"] for user, _, _ in roles)


def test_org_admin_revokes_from_the_organisation_page(client: TestClient, db: Database,
                                                     world: dict[str, Any]) -> None:
    token = sign_in(client, world["boss"])
    client.post(f"/organisations/{world['Org A']}/invitations",
                data={"csrf_token": token, "email": "eve@test.example", "role": "member"})
    with db.session() as s:
        inv_id = s.scalars(select(Invitation.id)).one()
    r = client.post(f"/invitations/{inv_id}/revoke", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith(f"/organisations/{world['Org A']}")
    token = sign_in(client, world["eve"])
    assert "No invitations are waiting for you." in client.get("/invitations").text
    assert client.post(f"/invitations/{inv_id}/accept", data={"csrf_token": token}).status_code == 409
    assert client.post(f"/invitations/{inv_id}/revoke", data={"csrf_token": token}).status_code == 403


def test_people_pages_hide_where_else_a_person_works(client: TestClient, db: Database,
                                                    world: dict[str, Any]) -> None:
    token = sign_in(client, world["boss"])
    client.post(f"/organisations/{world['Org A']}/invitations",
                data={"csrf_token": token, "email": "ana@test.example", "role": "member"})
    assert "ana@test.example" not in client.get("/users").text  # not a member yet
    lab = client.get(f"/organisations/{world['Secret Lab']}").text
    assert "ana@test.example" not in lab and "Only its members see who belongs to it." in lab

    with db.session() as s:
        inv_id = s.scalars(select(Invitation.id)).one()
    token = sign_in(client, world["ana"])
    client.post(f"/invitations/{inv_id}/accept", data={"csrf_token": token})

    sign_in(client, world["boss"])
    users = client.get("/users").text
    assert "ana@test.example" in users and "Secret Lab" not in users
    assert "ana@test.example" not in client.get(f"/organisations/{world['Secret Lab']}").text
