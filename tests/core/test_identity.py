"""Identity through the HTTP API: keys, organisations, users, memberships, authorisation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from sovstack.core.db import Database, utcnow
from sovstack.core.tables import ApiKey, AuditEvent, Organisation, User
from tests.conftest import make_key, make_user


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_me_names_the_key_and_its_owner(client: TestClient, admin: dict[str, Any], admin_key: str) -> None:
    body = client.get("/api/v1/me", headers=bearer(admin_key)).json()
    assert body["user"]["email"] == admin["email"]
    assert body["key_prefix"] == admin_key.split("_")[0]
    assert body["scopes"] == ["admin", "read", "write"]


def test_requests_without_or_with_bad_keys_are_unauthenticated(client: TestClient, admin_key: str) -> None:
    assert client.get("/api/v1/me").status_code == 401
    for header in ("Bearer sk-00000000_nope", "Basic abc", "Bearer ", "Bearer notakey"):
        r = client.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.json()["error"]["type"] == "unauthenticated"
    tampered = admin_key[:-1] + ("A" if admin_key[-1] != "A" else "B")
    assert client.get("/api/v1/me", headers=bearer(tampered)).status_code == 401


def test_key_is_stored_hashed_and_shown_only_at_creation(admin_client: TestClient, db: Database) -> None:
    r = admin_client.post("/api/v1/keys", json={"name": "ci", "scopes": ["read"], "expires_in_days": 30})
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith(created["prefix"] + "_")
    listed = admin_client.get("/api/v1/keys").json()
    assert any(k["prefix"] == created["prefix"] for k in listed)
    assert secret not in admin_client.get("/api/v1/keys").text
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == created["prefix"]))
        assert row is not None and secret not in (row.key_hash, row.prefix, row.name)
        events = s.scalars(select(AuditEvent)).all()
        assert all(secret not in e.detail for e in events)


def test_expired_and_revoked_keys_are_refused(client: TestClient, db: Database, admin: dict[str, Any]) -> None:
    key = make_key(db, admin["id"], expires_in_days=1)
    assert client.get("/api/v1/me", headers=bearer(key)).status_code == 200
    with db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.prefix == key.split("_")[0])
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    r = client.get("/api/v1/me", headers=bearer(key))
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]

    key2 = make_key(db, admin["id"])
    prefix = key2.split("_")[0]
    assert client.delete(f"/api/v1/keys/{prefix}", headers=bearer(key2)).json()["revoked_at"]
    r = client.get("/api/v1/me", headers=bearer(key2))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_last_used_time_is_recorded(client: TestClient, db: Database, admin: dict[str, Any]) -> None:
    key = make_key(db, admin["id"])
    client.get("/api/v1/me", headers=bearer(key))
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.prefix == key.split("_")[0]))
        assert row is not None and row.last_used_at is not None


def test_read_only_key_cannot_change_state(client: TestClient, db: Database, admin: dict[str, Any]) -> None:
    key = make_key(db, admin["id"], ["read"])
    assert client.get("/api/v1/organisations", headers=bearer(key)).status_code == 200
    r = client.post("/api/v1/organisations", headers=bearer(key),
                    json={"name": "Nope", "kind": "startup", "jurisdiction": "IN"})
    assert r.status_code == 403 and "write scope" in r.json()["error"]["message"]
    with db.session() as s:
        event = s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()))
        assert event is not None and (event.action, event.outcome) == ("auth.scope", "refused")
        assert event.actor == f"admin@test.example ({key.split('_')[0]})"
        assert event.target == "POST /api/v1/organisations"


def test_admin_scope_is_needed_for_admin_actions(client: TestClient, db: Database, admin: dict[str, Any]) -> None:
    key = make_key(db, admin["id"], ["read", "write"])
    r = client.post("/api/v1/organisations", headers=bearer(key),
                    json={"name": "Nope", "kind": "startup", "jurisdiction": "IN"})
    assert r.status_code == 403 and "admin scope" in r.json()["error"]["message"]


def test_member_cannot_create_organisation_and_refusal_is_audited(client: TestClient, db: Database) -> None:
    member = make_user(db, "member@test.example")
    r = client.post("/api/v1/organisations", headers=bearer(make_key(db, member["id"])),
                    json={"name": "Mine", "kind": "startup", "jurisdiction": "IN"})
    assert r.status_code == 403
    assert r.json()["error"]["reasons"] == ["member@test.example is not a deployment admin"]
    with db.session() as s:
        assert s.scalar(select(Organisation).where(Organisation.name == "Mine")) is None
        event = s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()))
        assert event is not None
        assert (event.action, event.outcome) == ("identity.organisation.create", "refused")
        assert "member@test.example" in event.actor


def test_bad_input_names_the_field(admin_client: TestClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "Org", "kind": "startup", "jurisdiction": "XX"}, "jurisdiction"),
        ({"name": "Org", "kind": "pirate", "jurisdiction": "IN"}, "kind"),
        ({"name": "Org", "kind": "startup", "jurisdiction": "IN", "colour": "red"}, "colour"),
        ({"name": 7, "kind": "startup", "jurisdiction": "IN"}, "name"),
        ({"kind": "startup", "jurisdiction": "IN"}, "name"),
    ]
    for body, field in cases:
        r = admin_client.post("/api/v1/organisations", json=body)
        assert r.status_code == 422, body
        assert r.json()["error"]["field"] == field, r.json()
    assert admin_client.get("/api/v1/organisations").json() == []


def test_malformed_and_oversize_json(admin_client: TestClient) -> None:
    r = admin_client.post("/api/v1/organisations", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "body"
    big = b'{"name": "' + b"x" * 2_000_000 + b'"}'
    r = admin_client.post("/api/v1/organisations", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"


def test_duplicates_conflict_and_leave_data_as_it_was(admin_client: TestClient, db: Database) -> None:
    body = {"name": "Org A", "kind": "academic", "jurisdiction": "IN"}
    assert admin_client.post("/api/v1/organisations", json=body).status_code == 201
    r = admin_client.post("/api/v1/organisations", json={**body, "kind": "startup"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "name"
    user = {"email": "dup@test.example", "name": "Dup", "password": "a long enough password"}
    assert admin_client.post("/api/v1/users", json=user).status_code == 201
    r = admin_client.post("/api/v1/users", json={**user, "email": "DUP@test.example"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "email"
    with db.session() as s:
        assert [o.kind for o in s.scalars(select(Organisation))] == ["academic"]
        assert len(s.scalars(select(User).where(User.email == "dup@test.example")).all()) == 1


def test_org_admin_manages_members_of_own_organisation_only(admin_client: TestClient, db: Database) -> None:
    a = admin_client.post("/api/v1/organisations", json={"name": "Org A", "kind": "academic", "jurisdiction": "IN"})
    b = admin_client.post("/api/v1/organisations", json={"name": "Org B", "kind": "startup", "jurisdiction": "FR"})
    a_id, b_id = a.json()["id"], b.json()["id"]
    boss = make_user(db, "boss@test.example")
    worker = make_user(db, "worker@test.example")
    r = admin_client.post("/api/v1/memberships", json={"user_id": boss["id"], "organisation_id": a_id,
                                                       "role": "org_admin"})
    assert r.status_code == 201
    boss_key = bearer(make_key(db, boss["id"]))
    # A newcomer joins by accepting an invitation (tests/core/test_invitations.py) ...
    inv = admin_client.post(f"/api/v1/organisations/{a_id}/invitations", headers=boss_key,
                            json={"email": worker["email"], "role": "member"})
    assert inv.status_code == 201
    worker_key = bearer(make_key(db, worker["id"]))
    assert admin_client.post(f"/api/v1/invitations/{inv.json()['id']}/accept", headers=worker_key).status_code == 200
    # ... and once in, the org_admin may give them another role there directly.
    ok = admin_client.post("/api/v1/memberships", headers=boss_key,
                           json={"user_id": worker["id"], "organisation_id": a_id, "role": "steward"})
    assert ok.status_code == 201 and ok.json()["role"] == "steward"
    refused = admin_client.post("/api/v1/memberships", headers=boss_key,
                                json={"user_id": worker["id"], "organisation_id": b_id, "role": "member"})
    assert refused.status_code == 403
    bad_role = admin_client.post("/api/v1/memberships", headers=boss_key,
                                 json={"user_id": worker["id"], "organisation_id": a_id, "role": "king"})
    assert bad_role.status_code == 422 and bad_role.json()["error"]["field"] == "role"
    users = {u["email"]: u for u in admin_client.get("/api/v1/users", headers=boss_key).json()}
    assert set(users) == {"boss@test.example", "worker@test.example"}
    assert {m["role"] for m in users["worker@test.example"]["memberships"]} == {"member", "steward"}


def test_user_may_change_own_name_but_not_make_self_admin(client: TestClient, db: Database) -> None:
    me = make_user(db, "me@test.example")
    key = bearer(make_key(db, me["id"]))
    assert client.patch(f"/api/v1/users/{me['id']}", headers=key, json={"name": "New"}).json()["name"] == "New"
    r = client.patch(f"/api/v1/users/{me['id']}", headers=key, json={"is_admin": True})
    assert r.status_code == 403
    assert client.get("/api/v1/me", headers=key).json()["is_admin"] is False


def test_key_for_another_user_needs_admin_and_scopes_are_checked(client: TestClient, db: Database,
                                                                  admin: dict[str, Any]) -> None:
    me = make_user(db, "me@test.example")
    key = bearer(make_key(db, me["id"]))
    r = client.post("/api/v1/keys", headers=key, json={"name": "x", "user_id": admin["id"]})
    assert r.status_code == 403
    r = client.post("/api/v1/keys", headers=key, json={"name": "x", "scopes": ["admin"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "scopes"
    r = client.post("/api/v1/keys", headers=key, json={"name": "x", "scopes": ["telepathy"]})
    assert r.status_code == 422 and "unknown scopes" in r.json()["error"]["message"]


def test_disabled_user_keys_stop_working(admin_client: TestClient, client: TestClient, db: Database) -> None:
    me = make_user(db, "me@test.example")
    key = make_key(db, me["id"])
    assert admin_client.patch(f"/api/v1/users/{me['id']}", json={"is_active": False}).status_code == 200
    client.headers.pop("Authorization", None)
    assert client.get("/api/v1/me", headers=bearer(key)).status_code == 401


def test_a_password_change_needs_the_current_one_and_ends_other_sessions(client: TestClient, db: Database,
                                                                         admin_key: str) -> None:
    """M4: a read+write key alone must not be enough to take over the console (and mint any key)."""
    from tests.console.test_pages import post_login

    me = make_user(db, "me@test.example")
    key = bearer(make_key(db, me["id"], ["read", "write"]))
    assert post_login(client, me["email"], me["password"]).status_code == 303
    old_cookies = dict(client.cookies)
    client.cookies.clear()
    new = {"password": "a brand new password 42"}
    r = client.patch(f"/api/v1/users/{me['id']}", headers=key, json=new)
    assert r.status_code == 403 and "current password" in r.json()["error"]["message"]
    r = client.patch(f"/api/v1/users/{me['id']}", headers=key, json={**new, "current_password": "a wrong guess"})
    assert r.status_code == 403
    assert post_login(client, me["email"], new["password"]).status_code == 401  # unchanged
    client.cookies.clear()
    r = client.patch(f"/api/v1/users/{me['id']}", headers=key, json={**new, "current_password": me["password"]})
    assert r.status_code == 200
    client.cookies.update(old_cookies)
    assert client.get("/", follow_redirects=False).status_code in (302, 303, 401)  # that session has ended
    client.cookies.clear()
    assert client.patch(f"/api/v1/users/{me['id']}", headers=bearer(admin_key),
                        json={"password": "set by the admin 1234"}).status_code == 200  # an admin needs none


def test_the_last_active_admin_cannot_be_disabled_or_demoted(client: TestClient, db: Database,
                                                             admin: dict[str, Any], admin_key: str) -> None:
    for change in ({"is_active": False}, {"is_admin": False}):
        r = client.patch(f"/api/v1/users/{admin['id']}", headers=bearer(admin_key), json=change)
        assert r.status_code == 409 and "only active deployment admin" in r.json()["error"]["message"]
    other = make_user(db, "second-admin@test.example", admin=True)
    assert client.patch(f"/api/v1/users/{admin['id']}", headers=bearer(admin_key),
                        json={"is_admin": False}).status_code == 200
    with db.session() as s:
        assert s.get(User, other["id"]).is_admin and not s.get(User, admin["id"]).is_admin


def test_parallel_guesses_cannot_pass_the_login_limit(db: Database, admin: dict[str, Any]) -> None:
    """M3: the failure counter was read-modify-written; 90 parallel failures counted 7."""
    from concurrent.futures import ThreadPoolExecutor

    from sovstack.core import identity
    from sovstack.core.errors import RateLimited, Unauthenticated

    def guess(i: int) -> str:
        with db.session() as s:
            try:
                identity.login(s, admin["email"], f"wrong guess {i}", max_failures=10, lockout_seconds=900,
                               max_age=60)
            except Unauthenticated:
                return "checked"
            except RateLimited:
                return "refused"
        return "in"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(guess, range(40)))
    assert outcomes.count("checked") == 10 and outcomes.count("refused") == 30, outcomes


def test_unknown_accounts_lock_like_real_ones_and_an_admin_can_unlock(client: TestClient, db: Database,
                                                                      admin: dict[str, Any],
                                                                      admin_key: str) -> None:
    from tests.console.test_pages import post_login

    def codes(email: str, n: int) -> list[int]:
        return [post_login(client, email, "wrong password!").status_code for _ in range(n)]

    assert codes("nobody@test.example", 11) == [401] * 10 + [429]
    assert codes(admin["email"], 11) == [401] * 10 + [429]  # the same answers: existence is not disclosed
    assert post_login(client, admin["email"], admin["password"]).status_code == 429
    r = client.post(f"/api/v1/users/{admin['id']}/unlock", headers=bearer(admin_key))
    assert r.status_code == 200
    assert post_login(client, admin["email"], admin["password"]).status_code == 303


def test_one_client_address_is_limited_across_accounts(client: TestClient, db: Database) -> None:
    from tests.console.test_pages import post_login

    db.settings.login_max_failures_per_client = 5
    answers = [post_login(client, f"user{i}@test.example", "wrong password!").status_code for i in range(7)]
    assert answers == [401] * 5 + [429, 429]
