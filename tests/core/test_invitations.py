"""People join an organisation only by accepting an invitation; an org_admin cannot add a stranger by id,
nor read a non-member's email or where else a person works."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from sovstack.cli import run
from sovstack.core import identity, invitations
from sovstack.core.db import Database, utcnow
from sovstack.core.errors import Conflict
from sovstack.core.settings import Settings
from sovstack.core.tables import AuditEvent, Invitation, Membership
from tests.conftest import make_key, make_user


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def world(admin_client: TestClient, db: Database) -> dict[str, Any]:
    """Org A with its org_admin (boss); a stranger who works for B and C; keys for each."""
    orgs = {}
    for name in ("Org A", "Org B", "Org C"):
        r = admin_client.post("/api/v1/organisations", json={"name": name, "kind": "academic", "jurisdiction": "IN"})
        orgs[name] = r.json()["id"]
    boss, stranger = make_user(db, "boss@test.example"), make_user(db, "stranger@test.example")
    for user, org, role in ((boss, "Org A", "org_admin"), (stranger, "Org B", "member"),
                            (stranger, "Org C", "steward")):
        r = admin_client.post("/api/v1/memberships", json={"user_id": user["id"], "organisation_id": orgs[org],
                                                           "role": role})
        assert r.status_code == 201
    return {**orgs, "boss": boss, "stranger": stranger, "boss_key": bearer(make_key(db, boss["id"])),
            "stranger_key": bearer(make_key(db, stranger["id"]))}


def invite(client: TestClient, w: dict[str, Any], email: str, role: str = "member") -> dict[str, Any]:
    r = client.post(f"/api/v1/organisations/{w['Org A']}/invitations", headers=w["boss_key"],
                    json={"email": email, "role": role})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_org_admin_cannot_add_a_stranger_by_id(admin_client: TestClient, db: Database,
                                               world: dict[str, Any]) -> None:
    answers = []
    for user_id in (world["stranger"]["id"], 999_999):  # an existing id answers exactly like a missing one
        r = admin_client.post("/api/v1/memberships", headers=world["boss_key"],
                              json={"user_id": user_id, "organisation_id": world["Org A"], "role": "member"})
        assert r.status_code == 403, r.text
        answers.append(r.json()["error"]["message"])
    assert answers[0] == answers[1] and "invite them by email" in answers[0]
    with db.session() as s:
        assert s.scalar(select(Membership).where(Membership.user_id == world["stranger"]["id"],
                                                 Membership.organisation_id == world["Org A"])) is None
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "identity.membership.add",
                                                     AuditEvent.outcome == "refused")).all()
        assert len(refused) == 2 and all(e.actor.startswith("boss@test.example") for e in refused)
    # A deployment admin still may.
    r = admin_client.post("/api/v1/memberships", json={"user_id": world["stranger"]["id"],
                                                       "organisation_id": world["Org A"], "role": "member"})
    assert r.status_code == 201


def test_org_admin_cannot_read_a_non_members_email_or_other_memberships(admin_client: TestClient,
                                                                       world: dict[str, Any]) -> None:
    boss, stranger = world["boss_key"], world["stranger"]
    people = admin_client.get("/api/v1/users", headers=boss).json()
    assert "stranger@test.example" not in json.dumps(people)
    for user_id in (stranger["id"], 999_999):  # no 404-versus-403 oracle on user ids
        r = admin_client.patch(f"/api/v1/users/{user_id}", headers=boss, json={"name": "Probe"})
        assert r.status_code == 403 and "stranger@test.example" not in r.text

    inv = invite(admin_client, world, "stranger@test.example")
    r = admin_client.post(f"/api/v1/invitations/{inv['id']}/accept", headers=world["stranger_key"])
    assert r.status_code == 200 and r.json()["organisation"] == "Org A"
    seen = {u["email"]: u for u in admin_client.get("/api/v1/users", headers=boss).json()}
    assert [m["organisation"] for m in seen["stranger@test.example"]["memberships"]] == ["Org A"]
    assert "Org B" not in json.dumps(seen) and "Org C" not in json.dumps(seen)
    # The person themselves and a deployment admin see every membership.
    me = admin_client.get("/api/v1/me", headers=world["stranger_key"]).json()
    assert {m["organisation"] for m in me["user"]["memberships"]} == {"Org A", "Org B", "Org C"}
    everyone = {u["email"]: u for u in admin_client.get("/api/v1/users").json()}
    assert len(everyone["stranger@test.example"]["memberships"]) == 3


def test_invitation_flow_end_to_end(admin_client: TestClient, db: Database, world: dict[str, Any]) -> None:
    newcomer = make_user(db, "new@test.example")
    key = bearer(make_key(db, newcomer["id"]))
    inv = invite(admin_client, world, "NEW@test.example", role="steward")
    assert (inv["email"], inv["role"], inv["status"], inv["organisation"]) == ("new@test.example", "steward",
                                                                               "pending", "Org A")
    url = f"/api/v1/organisations/{world['Org A']}/invitations"
    assert [i["id"] for i in admin_client.get(url, headers=world["boss_key"]).json()] == [inv["id"]]
    assert [i["id"] for i in admin_client.get("/api/v1/invitations", headers=key).json()] == [inv["id"]]
    assert admin_client.get("/api/v1/me", headers=key).json()["user"]["memberships"] == []  # not before accepting

    r = admin_client.post(f"/api/v1/invitations/{inv['id']}/accept", headers=key)
    assert r.status_code == 200 and r.json() == {"organisation_id": world["Org A"], "organisation": "Org A",
                                                 "role": "steward"}
    assert admin_client.get("/api/v1/me", headers=key).json()["user"]["memberships"] == [r.json()]
    assert admin_client.get("/api/v1/invitations", headers=key).json() == []
    assert admin_client.get(url, headers=world["boss_key"]).json() == []
    everything = admin_client.get(url, headers=world["boss_key"], params={"all": True}).json()
    assert [i["status"] for i in everything] == ["accepted"]
    again = admin_client.post(f"/api/v1/invitations/{inv['id']}/accept", headers=key)
    assert again.status_code == 409 and "accepted" in again.json()["error"]["message"]
    with db.session() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("identity.invitation.%"))
                            .order_by(AuditEvent.seq)).all()
        assert actions == ["identity.invitation.create", "identity.invitation.accept"]


def test_an_invitation_for_one_email_cannot_be_accepted_by_another_user(admin_client: TestClient, db: Database,
                                                                       world: dict[str, Any]) -> None:
    invited = make_user(db, "invited@test.example")
    inv = invite(admin_client, world, "invited@test.example")
    assert admin_client.get("/api/v1/invitations", headers=world["stranger_key"]).json() == []
    for verb in ("accept", "decline"):
        r = admin_client.post(f"/api/v1/invitations/{inv['id']}/{verb}", headers=world["stranger_key"])
        assert r.status_code == 403 and "invited@test.example" not in r.text
    with db.session() as s:
        assert s.scalar(select(Membership).where(Membership.user_id == world["stranger"]["id"],
                                                 Membership.organisation_id == world["Org A"])) is None
        row = s.get(Invitation, inv["id"])
        assert row is not None and row.status == "pending"
        refused = s.scalars(select(AuditEvent).where(AuditEvent.target == f"invitation:{inv['id']}")).all()
        assert [(e.action, e.outcome) for e in refused] == [("identity.invitation.accept", "refused"),
                                                            ("identity.invitation.decline", "refused")]
    # The boss can neither accept it for them nor answer it through an admin's key without being them.
    assert admin_client.post(f"/api/v1/invitations/{inv['id']}/accept", headers=world["boss_key"]).status_code == 403
    assert admin_client.post(f"/api/v1/invitations/{inv['id']}/accept").status_code == 403
    ok = admin_client.post(f"/api/v1/invitations/{inv['id']}/accept", headers=bearer(make_key(db, invited["id"])))
    assert ok.status_code == 200


def test_revoked_declined_and_expired_invitations_cannot_be_accepted(admin_client: TestClient, db: Database,
                                                                    world: dict[str, Any]) -> None:
    person = make_user(db, "person@test.example")
    key = bearer(make_key(db, person["id"]))
    revoked = invite(admin_client, world, person["email"], role="member")
    # Only the organisation's org_admins revoke: not the invitee, not another organisation's people.
    assert admin_client.post(f"/api/v1/invitations/{revoked['id']}/revoke", headers=key).status_code == 403
    assert admin_client.post(f"/api/v1/invitations/{revoked['id']}/revoke",
                             headers=world["stranger_key"]).status_code == 403
    r = admin_client.post(f"/api/v1/invitations/{revoked['id']}/revoke", headers=world["boss_key"])
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    declined = invite(admin_client, world, person["email"], role="reviewer")
    assert admin_client.post(f"/api/v1/invitations/{declined['id']}/decline", headers=key).json()["status"] \
        == "declined"
    expired = invite(admin_client, world, person["email"], role="steward")
    with db.session() as s:
        s.execute(update(Invitation).where(Invitation.id == expired["id"]).values(expires_at=utcnow()))
        s.commit()
    assert admin_client.get("/api/v1/invitations", headers=key).json() == []
    for inv, status in ((revoked, "revoked"), (declined, "declined"), (expired, "expired")):
        r = admin_client.post(f"/api/v1/invitations/{inv['id']}/accept", headers=key)
        assert r.status_code == 409 and status in r.json()["error"]["message"], r.text
    with db.session() as s:
        assert s.scalars(select(Membership).where(Membership.user_id == person["id"])).all() == []


def test_an_accept_racing_a_revoke_loses(admin_client: TestClient, db: Database, world: dict[str, Any]) -> None:
    racer = make_user(db, "racer@test.example")
    inv = invite(admin_client, world, racer["email"])
    with db.session() as accepting:
        seen = accepting.get(Invitation, inv["id"])  # the accept has read it pending ...
        assert seen is not None and seen.status == "pending"
        r = admin_client.post(f"/api/v1/invitations/{inv['id']}/revoke", headers=world["boss_key"])
        assert r.status_code == 200  # ... when the revoke commits
        who = identity.principal_for(accepting, identity.get_user(accepting, racer["id"]))
        with pytest.raises(Conflict, match="revoked"):
            invitations.accept(accepting, who, inv["id"])
    with db.session() as s:
        assert s.scalars(select(Membership).where(Membership.user_id == racer["id"])).all() == []


def test_inviting_says_nothing_of_whether_an_account_exists(admin_client: TestClient, db: Database,
                                                          world: dict[str, Any]) -> None:
    ghost = invite(admin_client, world, "nobody-yet@test.example")
    known = invite(admin_client, world, "stranger@test.example")
    assert ghost.keys() == known.keys() and ghost["status"] == known["status"] == "pending"
    later = make_user(db, "nobody-yet@test.example")  # the account is made afterwards: the invitation waits
    key = bearer(make_key(db, later["id"]))
    assert [i["id"] for i in admin_client.get("/api/v1/invitations", headers=key).json()] == [ghost["id"]]


def test_invitation_input_and_conflicts(admin_client: TestClient, world: dict[str, Any]) -> None:
    url = f"/api/v1/organisations/{world['Org A']}/invitations"
    boss = world["boss_key"]
    for body, field in (({"email": "not an email", "role": "member"}, "email"),
                        ({"email": "x@test.example", "role": "emperor"}, "role"),
                        ({"email": "x@test.example", "role": "member", "expires_in_days": 0}, "expires_in_days")):
        r = admin_client.post(url, headers=boss, json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field
    invite(admin_client, world, "x@test.example")
    assert admin_client.post(url, headers=boss, json={"email": "x@test.example", "role": "member"}).status_code == 409
    r = admin_client.post(url, headers=boss, json={"email": "boss@test.example", "role": "org_admin"})
    assert r.status_code == 409 and "already holds" in r.json()["error"]["message"]
    other = f"/api/v1/organisations/{world['Org B']}/invitations"
    assert admin_client.post(other, headers=boss, json={"email": "x@test.example", "role": "member"}).status_code \
        == 403
    assert admin_client.get(other, headers=boss).status_code == 403


def test_invitations_from_the_cli(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    def cli(*args: str) -> int:
        return run(["--home", str(settings.home), *args])

    assert cli("org", "create", "Org One", "--kind", "startup", "--jurisdiction", "IN") == 0
    for email in ("boss@test.example", "ana@test.example", "eve@test.example"):
        assert cli("user", "create", email, "--name", email.split("@")[0]) == 0
    assert cli("user", "grant", "boss@test.example", "--org", "Org One", "--role", "org_admin") == 0
    capsys.readouterr()
    assert cli("invitation", "create", "Org One", "ana@test.example", "--role", "steward",
               "--as", "boss@test.example", "--json") == 0
    inv = json.loads(capsys.readouterr().out)
    assert cli("invitation", "create", "Org One", "eve@test.example", "--role", "member",
               "--as", "ana@test.example") == 1  # not (yet) an org_admin there
    assert cli("invitation", "list", "--as", "ana@test.example", "--json") == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == [inv["id"]]
    assert cli("invitation", "accept", str(inv["id"]), "--as", "eve@test.example") == 1
    assert "was not sent to you" in capsys.readouterr().err
    assert cli("invitation", "accept", str(inv["id"]), "--as", "ana@test.example") == 0
    assert "ana@test.example is now steward in Org One" in capsys.readouterr().out
    assert cli("invitation", "accept", str(inv["id"]), "--as", "ana@test.example") == 2  # already accepted
    assert cli("invitation", "list", "--org", "Org One", "--all", "--json") == 0
    assert [i["status"] for i in json.loads(capsys.readouterr().out)] == ["accepted"]
    assert cli("invitation", "revoke", str(inv["id"])) == 2
    assert cli("invitation", "list") == 2  # whose? the operator receives no invitations
    assert cli("invitation", "accept", "999", "--as", "ana@test.example") == 2

