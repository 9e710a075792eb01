"""The server-rendered console, in process: login, CSRF, the pages and their forms."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sovstack.console.auth import LOGIN_CSRF_COOKIE
from sovstack.core import identity, policy
from sovstack.core.api.deps import SESSION_COOKIE

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY = re.compile(r"sk-[0-9a-f]{8}_[A-Za-z0-9_-]{20,}")


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def post_login(client: TestClient, email: str, password: str, next_path: str = "/") -> Any:
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text),
                                       "next": next_path}, follow_redirects=False)


@pytest.fixture
def console(client: TestClient, admin: dict[str, Any]) -> TestClient:
    """A client signed in to the console as the admin."""
    response = post_login(client, admin["email"], admin["password"])
    assert response.status_code == 303, response.text
    return client


def test_login_page_is_public(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert '<form method="post" action="/login"' in page.text
    assert '<label for="password">' in page.text
    assert LOGIN_CSRF_COOKIE in page.cookies


def test_wrong_password_shows_the_error_on_the_form(client: TestClient, admin: dict[str, Any]) -> None:
    response = post_login(client, admin["email"], "not the password at all")
    assert response.status_code == 401
    assert "wrong email or password" in response.text
    assert f'value="{admin["email"]}"' in response.text
    assert SESSION_COOKIE not in client.cookies


def test_ten_wrong_passwords_lock_the_account(client: TestClient, admin: dict[str, Any]) -> None:
    for _ in range(10):
        assert post_login(client, admin["email"], "wrong password!").status_code == 401
    locked = post_login(client, admin["email"], admin["password"])
    assert locked.status_code == 429
    assert "too many login attempts" in locked.text
    assert int(locked.headers["retry-after"]) > 0


def test_login_without_the_form_token_is_refused(client: TestClient, admin: dict[str, Any]) -> None:
    response = client.post("/login", data={"email": admin["email"], "password": admin["password"]})
    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_login_sets_the_cookie_and_opens_the_dashboard(client: TestClient, admin: dict[str, Any]) -> None:
    response = post_login(client, admin["email"], admin["password"], next_path="/keys")
    assert response.status_code == 303
    assert response.headers["location"] == "/keys"
    cookie = response.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert "Dashboard" in dashboard.text and admin["email"] in dashboard.text
    assert 'id="chain-status"' in dashboard.text and "Intact" in dashboard.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(client: TestClient, admin: dict[str, Any], target: str) -> None:
    response = post_login(client, admin["email"], admin["password"], next_path=target)
    assert response.headers["location"] == "/"


@pytest.mark.parametrize("path", ["/", "/organisations", "/users", "/keys", "/parties", "/jurisdictions",
                                  "/policy", "/audit", "/console/audit.jsonl"])
def test_console_pages_need_a_session(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


def test_logout_ends_the_session(console: TestClient) -> None:
    token = csrf_of(console.get("/").text)
    response = console.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    console.cookies.clear()
    assert console.get("/", follow_redirects=False).status_code == 303


def test_post_without_csrf_is_refused_and_changes_nothing(console: TestClient, app: FastAPI) -> None:
    response = console.post("/organisations", data={"name": "Sneaky Org", "kind": "startup",
                                                    "jurisdiction": "IN"})
    assert response.status_code == 403
    assert "CSRF" in response.text
    wrong = console.post("/organisations", data={"name": "Sneaky Org", "kind": "startup",
                                                 "jurisdiction": "IN", "csrf_token": "forged"})
    assert wrong.status_code == 403
    with app.state.db.session() as s:
        assert [o.name for o in identity.list_organisations(s)] == []


def test_create_organisation_through_the_form(console: TestClient) -> None:
    token = csrf_of(console.get("/organisations").text)
    response = console.post("/organisations", data={"name": "Bharat Data Trust", "kind": "government",
                                                    "jurisdiction": "IN", "csrf_token": token})
    assert response.status_code == 200
    assert "Organisation Bharat Data Trust created." in response.text
    assert "<h1>Bharat Data Trust</h1>" in response.text
    listing = console.get("/organisations")
    assert "Bharat Data Trust" in listing.text


def test_duplicate_organisation_is_shown_on_the_form(console: TestClient) -> None:
    token = csrf_of(console.get("/organisations").text)
    form = {"name": "Twice", "kind": "startup", "jurisdiction": "IN", "csrf_token": token}
    console.post("/organisations", data=form)
    again = console.post("/organisations", data=form)
    assert again.status_code == 409
    assert "already exists" in again.text


def test_bad_organisation_input_names_the_field(console: TestClient) -> None:
    token = csrf_of(console.get("/organisations").text)
    response = console.post("/organisations", data={"name": "X", "kind": "startup", "jurisdiction": "IN",
                                                    "csrf_token": token})
    assert response.status_code == 422
    assert "name" in response.text


def test_new_api_key_is_shown_exactly_once(console: TestClient) -> None:
    token = csrf_of(console.get("/keys").text)
    created = console.post("/keys", data={"name": "laptop", "scopes": ["read", "write"], "csrf_token": token})
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    found = KEY.search(created.text)
    assert found, created.text
    key = found.group(0)
    assert 'id="new-key"' in created.text and "it will not be shown again" in created.text
    again = console.get("/keys")
    assert key not in again.text
    assert key.split("_")[0] in again.text
    assert 'id="new-key"' not in again.text


def test_revoke_a_key(console: TestClient) -> None:
    token = csrf_of(console.get("/keys").text)
    created = console.post("/keys", data={"name": "short-lived", "scopes": ["read"], "csrf_token": token})
    prefix = KEY.search(created.text).group(0).split("_")[0]  # type: ignore[union-attr]
    key_id = re.search(r'action="/keys/(\d+)/revoke"', created.text).group(1)  # type: ignore[union-attr]
    revoked = console.post(f"/keys/{key_id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 200
    assert f"Key {prefix} revoked." in revoked.text
    assert "revoked</span>" in revoked.text


def test_audit_lists_the_key_creation(console: TestClient) -> None:
    token = csrf_of(console.get("/keys").text)
    console.post("/keys", data={"name": "audited", "scopes": ["read"], "csrf_token": token})
    page = console.get("/audit")
    assert page.status_code == 200
    assert "identity.key.create" in page.text
    assert "Chain intact" in page.text
    filtered = console.get("/audit", params={"action": "identity.login"})
    assert "identity.key.create" not in filtered.text and "identity.login" in filtered.text
    export = console.get("/console/audit.jsonl", params={"action": "identity.key.create"})
    assert export.status_code == 200
    lines = export.text.strip().splitlines()
    assert len(lines) == 1 and '"identity.key.create"' in lines[0]


def test_audit_pagination_goes_older(console: TestClient, app: FastAPI) -> None:
    from sovstack.core import audit

    with app.state.db.session() as s:
        for i in range(60):
            audit.record(s, actor="test", action="test.event", target=f"n:{i}")
        s.commit()
    first = console.get("/audit")
    older = re.search(r'href="/audit\?([^"]*before=\d+[^"]*)"', first.text)
    assert older, "no link to older events"
    second = console.get("/audit?" + older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    assert "Newest" in second.text


def test_policy_edit_with_invalid_json_keeps_the_old_policy(console: TestClient, app: FastAPI) -> None:
    page = console.get("/policy")
    token = csrf_of(page.text)
    broken = console.post("/policy", data={"document": '{"home_jurisdiction": "IN", ', "csrf_token": token})
    assert broken.status_code == 422
    assert "not valid JSON" in broken.text
    deep = console.post("/policy", data={"document": "[" * 100_000 + "]" * 100_000, "csrf_token": token})
    assert deep.status_code == 422 and "the policy: nested more than 100 levels deep" in deep.text
    invalid = console.post("/policy", data={"document": '{"home_jurisdiction": "IN", "levels": {}}',
                                            "csrf_token": token})
    assert invalid.status_code == 422
    assert "missing" in invalid.text
    with app.state.db.session() as s:
        assert policy.history(s) == []


def test_policy_edit_saves_a_new_version(console: TestClient, app: FastAPI) -> None:
    token = csrf_of(console.get("/policy").text)
    doc = policy.default_policy("FR").model_dump_json()
    saved = console.post("/policy", data={"document": doc, "csrf_token": token})
    assert saved.status_code == 200
    assert "is now in force" in saved.text
    with app.state.db.session() as s:
        assert policy.current(s, "IN").home_jurisdiction == "FR"


def test_policy_check_explains_the_decision(console: TestClient) -> None:
    allowed = console.get("/policy", params={"classification": "open", "action": "download"})
    assert 'id="decision"' in allowed.text and "Allowed" in allowed.text
    refused = console.get("/policy", params={"classification": "sensitive", "action": "process",
                                             "hosting_jurisdiction": "US"})
    assert "Refused" in refused.text and "hosted in US" in refused.text


def test_party_with_foreign_parent_shows_its_exposure(console: TestClient) -> None:
    token = csrf_of(console.get("/parties").text)
    response = console.post("/parties", data={"name": "Hyperscale Cloud India", "kinds": ["compute_provider"],
                                              "jurisdiction": "IN", "ultimate_parent": "Hyperscale Inc",
                                              "parent_jurisdiction": "US", "csrf_token": token})
    assert response.status_code == 200
    assert "Hyperscale Cloud India" in response.text
    assert "CLOUD Act" in response.text


def test_jurisdictions_show_their_sources(console: TestClient) -> None:
    page = console.get("/jurisdictions")
    assert "CLOUD Act" in page.text and "https://www.law.cornell.edu/uscode/text/18/2713" in page.text
    assert "Data, not legal advice" in page.text


def test_every_nav_page_renders_for_an_admin(console: TestClient, app: FastAPI) -> None:
    nav = app.state.console.nav
    assert [e.label for e in nav][:9] == ["Dashboard", "Organisations", "Users", "Invitations", "API keys",
                                           "Parties", "Jurisdictions", "Policy", "Audit"]
    for entry in nav:
        page = console.get(entry.path)
        assert page.status_code == 200, entry.path
        assert f'href="{entry.path}" aria-current="page"' in page.text
        assert "<main" in page.text


def test_member_pages_and_refusals(client: TestClient, app: FastAPI, admin: dict[str, Any]) -> None:
    from tests.conftest import make_user

    member = make_user(app.state.db, "member@test.example")
    assert post_login(client, member["email"], member["password"]).status_code == 303
    assert client.get("/keys").status_code == 200
    assert "New organisation" not in client.get("/organisations").text
    audit_page = client.get("/audit")
    assert audit_page.status_code == 403
    assert "only a deployment admin may do this" in audit_page.text
    token = csrf_of(client.get("/users").text)
    refused = client.post("/users", data={"email": "x@test.example", "name": "X", "csrf_token": token})
    assert refused.status_code == 403
    assert "only a deployment admin" in refused.text


def test_flash_message_is_escaped(console: TestClient) -> None:
    page = console.get("/", params={"ok": "<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text


def test_unknown_organisation_is_a_friendly_404(console: TestClient) -> None:
    page = console.get("/organisations/9999")
    assert page.status_code == 404
    assert "no organisation 9999" in page.text and "<main" in page.text


def test_static_assets_are_served(client: TestClient) -> None:
    for name in ("style.css", "console.js", "logo.svg", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200
    css = client.get("/static/style.css").text
    assert "http://" not in css and "https://" not in css and "@import" not in css


def test_long_chains_are_verified_on_request(console: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from sovstack.console import routes

    monkeypatch.setattr(routes, "VERIFY_INLINE_MAX", 0)
    client = console
    dashboard = client.get("/")
    assert "Verify the chain now" in dashboard.text and "Intact" not in dashboard.text
    assert "Verify the chain now" in client.get("/audit").text
    assert "Chain intact" in client.get("/audit", params={"verify": 1}).text
