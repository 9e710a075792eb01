"""The gateway's console pages, in process: the catalogue with its badges and probes, cut-off, usage, playground."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sovstack.core import parties
from sovstack.core.base import utcnow
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import PartyCreate
from sovstack.gateway import pages, service
from sovstack.gateway.schemas import DeploymentCreate, ModelCreate
from sovstack.gateway.tables import Deployment, Usage
from tests.conftest import LAUGHS, make_user
from tests.gateway.upstream import Upstream

SYSTEM = Principal.system("test")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
DEAD = "http://127.0.0.1:9/v1"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def post_login(client: TestClient, email: str, password: str) -> Any:
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text),
                                       "next": "/"}, follow_redirects=False)


@pytest.fixture
def console(client: TestClient, admin: dict[str, Any]) -> TestClient:
    """A client signed in to the console as the admin."""
    assert post_login(client, admin["email"], admin["password"]).status_code == 303
    return client


@pytest.fixture
def catalogue(db: Database) -> Callable[..., None]:
    """Register the parties once, then any deployments of ``indic-chat`` asked for."""
    with db.session() as s, unit_of_work(s, SYSTEM):
        for name, kinds, jur, parent, parent_jur in [
                ("Desi Cloud", ["model_host"], "IN", "", None),
                ("Hyper India", ["model_host"], "IN", "Hyper Inc", "US"),
                ("Bharat Models", ["model_developer"], "IN", "", None)]:
            parties.create_party(s, SYSTEM, PartyCreate(name=name, kinds=kinds, jurisdiction=jur,
                                                        ultimate_parent=parent, parent_jurisdiction=parent_jur))
        service.create_model(s, SYSTEM, ModelCreate(name="indic-chat", description="Test model"))

    def add(name: str, url: str, **extra: Any) -> None:
        data = {"name": name, "model": "indic-chat", "base_url": url, "upstream_model": "up", "hosting_jurisdiction":
                "IN", "operator": "Desi Cloud", "developer": "Bharat Models", "licence": "Apache-2.0",
                "open_weights": True, "languages": [{"code": "hi", "tier": "high"}, {"code": "ta", "tier": "low"}],
                "api_key": "sk-upstream-secret", **extra}
        with db.session() as s, unit_of_work(s, SYSTEM):
            service.create_deployment(s, SYSTEM, db.settings, DeploymentCreate(**data))

    return add


def withdrawn(db: Database) -> dict[str, bool]:
    with db.session() as s:
        return {d.name: d.withdrawn for d in s.query(Deployment)}


def test_pages_need_a_session(client: TestClient) -> None:
    for path in ("/gateway", "/gateway/usage", "/gateway/playground"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")


def test_nav_lists_the_gateway_pages(console: TestClient, app: FastAPI) -> None:
    labels = [(e.label, e.path) for e in app.state.console.nav]
    assert ("Models", "/gateway") in labels and ("Usage", "/gateway/usage") in labels
    page = console.get("/gateway/usage")
    assert 'href="/gateway/usage" aria-current="page"' in page.text


def test_catalogue_shows_badges_and_probes(console: TestClient, catalogue: Callable[..., None],
                                           upstreams: Callable[[str], Upstream]) -> None:
    live = upstreams("live")
    catalogue("indic-dead", DEAD)
    catalogue("indic-live", live.url, operator="Hyper India", priority=5)
    page = console.get("/gateway")
    assert page.status_code == 200
    html = page.text
    assert "indic-chat" in html and "Test model" in html
    dead = html[html.index('id="deployment-indic-dead"'):]
    assert "unreachable" in dead[:dead.index("</tr>")] and "cannot connect" in dead[:dead.index("</tr>")]
    alive = html[html.index('id="deployment-indic-live"'):]
    row = alive[:alive.index("</tr>")]
    assert "reachable" in row and "unreachable" not in row and "HTTP 200" in row
    # Sovereignty facts: developer, hosting, operator and its foreign parent, weights, licence, languages.
    assert "Bharat Models" in row and "Hyper India" in row and "Hyper Inc" in row
    assert 'class="code code-foreign" title="United States' in row
    assert "open weights" in row and "Apache-2.0" in row
    assert "gw-tier-high" in row and ">hi<" in row and ">ta<" in row
    assert "closed" in row and "in service" in row
    # The probe asked /models and never carried the upstream's key.
    assert live.headers == []


def test_probe_of_a_silent_server_times_out(console: TestClient, catalogue: Callable[..., None],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "PROBE_SECONDS", 0.3)
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        catalogue("silent", f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
        started = time.monotonic()
        page = console.get("/gateway")
        assert time.monotonic() - started < 3
    assert page.status_code == 200
    assert "unreachable" in page.text and "no answer within 0.3 s" in page.text


def test_cutoff_and_restore_through_the_form(console: TestClient, catalogue: Callable[..., None],
                                             db: Database) -> None:
    catalogue("indic-dead", DEAD)
    catalogue("indic-hyper", DEAD, operator="Hyper India")
    token = csrf_of(console.get("/gateway").text)
    response = console.post("/gateway/cutoff", data={"jurisdiction": "US", "party": "", "reason": "US drill",
                                                     "csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert withdrawn(db) == {"indic-dead": False, "indic-hyper": True}
    page = console.get(response.headers["location"])
    assert "Cut off US: withdrew indic-hyper." in page.text
    row = page.text[page.text.index('id="deployment-indic-hyper"'):]
    assert "withdrawn" in row[:row.index("</tr>")] and "US drill" in row[:row.index("</tr>")]

    restored = console.post("/gateway/restore", data={"jurisdiction": "", "party": "Hyper India",
                                                      "csrf_token": token}, follow_redirects=False)
    assert restored.status_code == 303
    assert withdrawn(db) == {"indic-dead": False, "indic-hyper": False}
    assert "Restored indic-hyper." in console.get(restored.headers["location"]).text


def test_cutoff_errors_are_shown_on_the_page(console: TestClient, catalogue: Callable[..., None],
                                             db: Database) -> None:
    catalogue("indic-dead", DEAD)
    token = csrf_of(console.get("/gateway").text)
    nothing = console.post("/gateway/cutoff", data={"csrf_token": token})
    assert nothing.status_code == 422
    assert "name a --jurisdiction or a --party" in nothing.text and 'id="cutoff"' in nothing.text
    unknown = console.post("/gateway/cutoff", data={"party": "Nobody Ltd", "csrf_token": token})
    assert unknown.status_code == 404 and "Nobody Ltd" in unknown.text
    bad = console.post("/gateway/cutoff", data={"jurisdiction": "ZZ", "csrf_token": token})
    assert bad.status_code == 422 and "jurisdiction" in bad.text
    forged = console.post("/gateway/cutoff", data={"jurisdiction": "IN", "csrf_token": "forged"})
    assert forged.status_code == 403
    assert withdrawn(db) == {"indic-dead": False}


def test_member_sees_no_cutoff_form_and_is_refused(client: TestClient, app: FastAPI, db: Database,
                                                   catalogue: Callable[..., None]) -> None:
    catalogue("indic-dead", DEAD)
    member = make_user(app.state.db, "member@test.example")
    assert post_login(client, member["email"], member["password"]).status_code == 303
    page = client.get("/gateway")
    assert page.status_code == 200 and "indic-dead" in page.text
    assert 'action="/gateway/cutoff"' not in page.text
    token = csrf_of(page.text)
    refused = client.post("/gateway/cutoff", data={"jurisdiction": "IN", "csrf_token": token})
    assert refused.status_code == 403
    assert "only a deployment admin" in refused.text
    assert withdrawn(db) == {"indic-dead": False}


def _usage(db: Database, rows: list[tuple[int, str, int | None, int, int, str]]) -> None:
    now = utcnow()
    with db.session() as s:
        for days_ago, model, org, t_in, t_out, outcome in rows:
            s.add(Usage(at=now - timedelta(days=days_ago, minutes=5), key_prefix="sk-test0", organisation_id=org,
                        model=model, deployment=f"{model}-dep", endpoint="chat", classification="open",
                        tokens_in=t_in, tokens_out=t_out, cost=0.01, latency_ms=120.0, tries=1, outcome=outcome))
        s.commit()


def test_usage_page_draws_charts(console: TestClient, db: Database) -> None:
    _usage(db, [(0, "indic-chat", None, 100, 50, "ok"), (1, "indic-chat", None, 10, 5, "ok"),
                (3, "frontier", None, 900, 300, "failed"), (40, "old-model", None, 1, 1, "ok")])
    page = console.get("/gateway/usage", params={"by": "model", "days": 7})
    assert page.status_code == 200
    html = page.text
    assert html.count("<svg") == 2 and 'id="chart-daily"' in html and 'id="chart-tokens"' in html
    assert html.count('class="chart-bar"') == 7 + 2  # a column per day, an input bar per model
    assert "indic-chat" in html and "frontier" in html and "old-model" not in html
    assert "1,365" in html  # tokens in the period
    assert "style=" not in html
    by_day = console.get("/gateway/usage", params={"by": "deployment", "days": 30})
    assert "indic-chat-dep" in by_day.text
    assert console.get("/gateway/usage", params={"by": "colour"}).status_code == 422


def test_usage_page_with_no_calls(console: TestClient) -> None:
    page = console.get("/gateway/usage")
    assert page.status_code == 200 and "No calls in this period." in page.text and 'id="chart-daily"' in page.text


def test_members_see_only_their_organisations_usage(client: TestClient, app: FastAPI, db: Database) -> None:
    from sovstack.core import identity
    from sovstack.core.schemas import MembershipCreate, OrganisationCreate

    member = make_user(db, "member@test.example")
    with db.session() as s, unit_of_work(s, SYSTEM):
        mine = identity.create_organisation(s, SYSTEM, OrganisationCreate(name="Mine Lab", kind="academic",
                                                                          jurisdiction="IN"))
        theirs = identity.create_organisation(s, SYSTEM, OrganisationCreate(name="Their Lab", kind="startup",
                                                                            jurisdiction="IN"))
        identity.add_membership(s, SYSTEM, MembershipCreate(user_id=member["id"], organisation_id=mine.id,
                                                            role="member"))
        ids = (mine.id, theirs.id)
    _usage(db, [(0, "mine-model", ids[0], 10, 10, "ok"), (0, "their-model", ids[1], 10, 10, "ok")])
    assert post_login(client, member["email"], member["password"]).status_code == 303
    page = client.get("/gateway/usage", params={"by": "organisation"})
    assert "Mine Lab" in page.text and "Their Lab" not in page.text
    assert "their-model" not in client.get("/gateway/usage").text


def test_playground_renders_with_the_csrf_token(console: TestClient, catalogue: Callable[..., None]) -> None:
    catalogue("indic-dead", DEAD)
    page = console.get("/gateway/playground")
    assert page.status_code == 200
    token = csrf_of(page.text)
    assert f'data-csrf="{token}"' in page.text
    assert '<script src="/static/gateway-playground.js" defer></script>' in page.text
    assert '<option value="indic-chat">' in page.text and '<option value="sensitive">' in page.text
    assert console.get("/static/gateway-playground.js").status_code == 200


def test_playground_call_with_the_session(console: TestClient, catalogue: Callable[..., None],
                                          upstreams: Callable[[str], Upstream]) -> None:
    """What the playground's script sends: the cookie plus the page's CSRF token, streaming."""
    live = upstreams("live")
    catalogue("indic-live", live.url)
    token = csrf_of(console.get("/gateway/playground").text)
    body = {"model": "indic-chat", "messages": [{"role": "user", "content": "hello"}], "stream": True}
    refused = console.post("/v1/chat/completions", json=body)
    assert refused.status_code == 403
    with console.stream("POST", "/v1/chat/completions", json=body,
                        headers={"X-CSRF-Token": token, "X-Sovstack-Classification": "open"}) as answer:
        text = "".join(answer.iter_text())
        assert answer.status_code == 200, text
        assert answer.headers["x-sovstack-deployment"] == "indic-live"
    assert "part0" in text and "data: [DONE]" in text


def test_catalogue_can_be_applied_from_the_console(console: TestClient, db: Database) -> None:
    page = console.get("/gateway")
    token = csrf_of(page.text)
    with db.session() as s, unit_of_work(s, Principal.system("test")):
        for name, jur in (("Applied Cloud", "IN"), ("Applied Labs", "IN")):
            parties.create_party(s, Principal.system("test"), PartyCreate(name=name, kinds=["model_host"],
                                                                          jurisdiction=jur))
    text = """models:
  - name: applied-model
    deployments:
      - name: applied-local
        base_url: http://127.0.0.1:9/v1
        upstream_model: up
        hosting_jurisdiction: IN
        operator: Applied Cloud
        developer: Applied Labs
"""
    r = console.post("/gateway/apply", data={"csrf_token": token, "catalogue": text}, follow_redirects=False)
    assert r.status_code == 303 and "applied-local" in r.headers["location"].replace("%3A", ":")
    assert "applied-model" in console.get("/gateway").text
    bad = console.post("/gateway/apply", data={"csrf_token": token, "catalogue": "models: [{name: x, bogus: 1}]"})
    assert bad.status_code == 422 and "bogus" in bad.text
    deep = console.post("/gateway/apply", data={"csrf_token": token, "catalogue": "models: " + "[" * 500 + "]" * 500})
    assert deep.status_code == 422 and "the catalogue: nested more than 100 levels deep" in deep.text
    bomb = console.post("/gateway/apply", data={"csrf_token": token, "catalogue": LAUGHS})
    assert bomb.status_code == 422 and "its YAML aliases expand it to over 100,000 values" in bomb.text


def test_disable_enable_and_delete_from_the_catalogue_page(console: TestClient, catalogue: Callable[..., None],
                                                           db: Database) -> None:
    catalogue("indic-dead", DEAD)
    catalogue("indic-other", DEAD)
    page = console.get("/gateway")
    token = csrf_of(page.text)
    assert 'action="/gateway/manage/deployments/disable"' in page.text
    r = console.post("/gateway/manage/deployments/disable", data={"name": "indic-dead", "csrf_token": token},
                     follow_redirects=False)
    assert r.status_code == 303
    with db.session() as s:
        assert {d.name: d.enabled for d in s.query(Deployment)} == {"indic-dead": False, "indic-other": True}
    page = console.get(r.headers["location"])
    row = page.text[page.text.index('id="deployment-indic-dead"'):]
    assert "Disabled deployment indic-dead." in page.text and "disabled" in row[:row.index("</tr>")]
    assert console.post("/gateway/manage/deployments/enable", data={"name": "indic-dead", "csrf_token": token},
                        follow_redirects=False).status_code == 303
    assert console.post("/gateway/manage/deployments/delete", data={"name": "indic-dead", "csrf_token": token},
                        follow_redirects=False).status_code == 303
    missing = console.post("/gateway/manage/deployments/delete", data={"name": "indic-dead", "csrf_token": token})
    assert missing.status_code == 404 and "indic-dead" in missing.text
    assert console.post("/gateway/manage/models/delete", data={"name": "indic-chat", "csrf_token": "forged"},
                        follow_redirects=False).status_code == 403
    gone = console.post("/gateway/manage/models/delete", data={"name": "indic-chat", "csrf_token": token},
                        follow_redirects=False)
    assert gone.status_code == 303
    assert "Deleted model indic-chat and its deployments indic-other." in console.get(gone.headers["location"]).text
    with db.session() as s:
        assert s.query(Deployment).count() == 0


def test_a_member_sees_no_manage_buttons_and_cannot_post_them(client: TestClient, catalogue: Callable[..., None],
                                                              db: Database) -> None:
    catalogue("indic-dead", DEAD)
    member = make_user(db, "member@test.example")
    assert post_login(client, member["email"], member["password"]).status_code == 303
    page = client.get("/gateway")
    assert "/gateway/manage/" not in page.text
    r = client.post("/gateway/manage/deployments/disable",
                    data={"name": "indic-dead", "csrf_token": csrf_of(page.text)})
    assert r.status_code == 403
    with db.session() as s:
        assert s.query(Deployment).one().enabled


def test_catalogue_names_an_anthropic_backend(console: TestClient, catalogue: Callable[..., None]) -> None:
    catalogue("indic-openai", DEAD)
    catalogue("indic-claude", DEAD, backend="anthropic")
    html = console.get("/gateway").text
    claude = html[html.index('id="deployment-indic-claude"'):]
    assert "anthropic API" in claude[:claude.index("</tr>")]
    plain = html[html.index('id="deployment-indic-openai"'):]
    assert "API</span>" not in plain[:plain.index("</tr>")]
