"""The data commons' console pages, in process: search with facets, a dataset's page, request, decide."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, make_user
from tests.console.test_pages import csrf_of, post_login
from tests.data.conftest import CSV, Commons


def _login(client: TestClient, email: str) -> None:
    client.cookies.clear()
    assert post_login(client, email, PASSWORD).status_code == 303


@pytest.fixture
def catalogue(commons: Commons) -> Commons:
    commons.create("rainfall_daily", description="Daily rainfall by district", keywords=["climate"])
    assert commons.publish("rainfall_daily").status_code == 201
    commons.create("clinic", classification="sensitive", entity_column="person_id", languages=["hi"],
                   dp_keys={"region": ["North", "South"]})
    assert commons.publish("clinic").status_code == 201
    return commons


def test_catalogue_searches_and_filters_by_facet(catalogue: Commons) -> None:
    client = catalogue.client
    _login(client, "analyst@test.example")
    page = client.get("/data", params={"q": "rain"})
    assert page.status_code == 200 and "rainfall_daily" in page.text and "/data/datasets/clinic" not in page.text
    page = client.get("/data", params={"classification": "sensitive"})
    assert "/data/datasets/clinic" in page.text and "/data/datasets/rainfall_daily" not in page.text
    assert 'href="/data?classification=open"' in client.get("/data").text  # a facet link


def test_request_from_the_dataset_page_and_decide_in_the_inbox(catalogue: Commons) -> None:
    client = catalogue.client
    _login(client, "analyst@test.example")
    page = client.get("/data/datasets/clinic")
    assert "sandbox-only" in page.text and "person_id" in page.text and "Croissant" in page.text
    r = client.post("/data/datasets/clinic/request", follow_redirects=False, data={
        "csrf_token": csrf_of(page.text), "purpose": "Count visits by region (synthetic)", "days": "14"})
    assert r.status_code == 303
    short = client.post("/data/datasets/clinic/request", data={
        "csrf_token": csrf_of(page.text), "purpose": "short", "days": "14"})
    assert short.status_code == 422 and "purpose" in short.text

    _login(client, "steward@test.example")
    inbox = client.get("/data/inbox")
    assert "Count visits by region" in inbox.text and "analyst@test.example" in inbox.text
    request_id = inbox.text.split('id="request-')[1].split('"')[0]
    refused = client.post(f"/data/requests/{request_id}/decide",
                          data={"csrf_token": csrf_of(inbox.text), "decision": "reject", "reason": ""})
    assert refused.status_code == 422 and "reason" in refused.text
    r = client.post(f"/data/requests/{request_id}/decide", follow_redirects=False,
                    data={"csrf_token": csrf_of(inbox.text), "decision": "approve", "reason": ""})
    assert r.status_code == 303 and "sandbox" in r.headers["location"]
    assert "Revoke" in client.get("/data/datasets/clinic").text  # the steward sees the grant

    _login(client, "analyst@test.example")
    mine = client.get("/data/access")
    assert "clinic" in mine.text and "live" in mine.text
    assert "You hold a sandbox grant" in client.get("/data/datasets/clinic").text


def test_pages_need_a_console_session(client: TestClient, db: Any) -> None:
    make_user(db, "someone@test.example")
    r = client.get("/data", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_sandbox_page_runs_sql_charts_groups_and_reports_privacy(catalogue: Commons) -> None:
    client = catalogue.client
    req = client.post("/api/v1/data/datasets/clinic/requests", headers=catalogue.member,
                      json={"purpose": "Visits by region (synthetic)", "days": 5}).json()
    client.post(f"/api/v1/data/requests/{req['id']}/decision", json={"approve": True}, headers=catalogue.steward)
    _login(client, "analyst@test.example")
    page = client.get("/data/sandbox")
    assert "clinic" in page.text and "aggregate only" in page.text
    sql = "SELECT region, count(*) AS visits FROM clinic GROUP BY region"
    grouped = client.post("/data/sandbox", data={"csrf_token": csrf_of(page.text), "sql": sql, "epsilon": "0.25"})
    assert grouped.status_code == 200 and 'id="result-chart"' in grouped.text and "visits by region" in grouped.text
    assert 'id="privacy-report"' in grouped.text and "spent ε 0.25" in grouped.text and "<strong>0.75</strong>" in (
        grouped.text)
    assert 'id="to-airlock"' in grouped.text and "/data/airlock?sql=SELECT" in grouped.text
    again = client.post("/data/sandbox", data={"csrf_token": csrf_of(page.text), "sql": sql, "epsilon": "0.25"})
    assert "nothing spent" in again.text and "<strong>0.75</strong>" in again.text
    by_age = client.post("/data/sandbox", data={"csrf_token": csrf_of(page.text),
                                                "sql": "SELECT age, count(*) AS n FROM clinic GROUP BY age"})
    assert by_age.status_code == 403 and "not declared public" in by_age.text
    wrong = client.post("/data/sandbox", data={"csrf_token": csrf_of(page.text), "sql": sql, "epsilon": "lots"})
    assert wrong.status_code == 422 and "epsilon" in wrong.text and sql in wrong.text
    refused = client.post("/data/sandbox", data={"csrf_token": csrf_of(page.text), "sql": "SELECT * FROM clinic"})
    assert refused.status_code == 403 and "P0001" not in refused.text
    history = client.get("/data/sandbox").text
    assert history.count("SELECT") >= 4 and "refused" in history


def test_preview_for_those_who_may_download_and_never_for_sensitive_data(catalogue: Commons) -> None:
    client = catalogue.client
    _login(client, "analyst@test.example")
    page = client.get("/data/datasets/rainfall_daily")
    assert 'id="preview"' in page.text and "P0001" in page.text  # open data: the first rows
    page = client.get("/data/datasets/clinic")
    assert 'id="preview"' not in page.text and "P0001" not in page.text
    catalogue.create("costs", classification="restricted")
    assert catalogue.publish("costs").status_code == 201
    assert 'id="preview"' not in client.get("/data/datasets/costs").text  # no grant yet


def test_stewards_create_and_publish_from_the_console(commons: Commons) -> None:
    client = commons.client
    _login(client, "steward@test.example")
    page = client.get("/data/new")
    assert "Synthetic Statistics Office" in page.text and "Synthetic University" not in page.text
    bad = client.post("/data/new", data={"csrf_token": csrf_of(page.text), "name": "web_costs", "title": "Costs",
                                         "publisher_id": str(commons.publisher), "licence": "Nope",
                                         "classification": "open", "storage_jurisdiction": "IN"})
    assert bad.status_code == 422 and "licence" in bad.text and 'value="web_costs"' in bad.text  # kept
    r = client.post("/data/new", follow_redirects=False, data={
        "csrf_token": csrf_of(page.text), "name": "web_costs", "title": "Costs (synthetic)",
        "publisher_id": str(commons.publisher), "licence": "CC-BY-4.0", "classification": "open",
        "storage_jurisdiction": "IN", "languages": "en, hi", "keywords": "cost; region"})
    assert r.status_code == 303
    page = client.get("/data/datasets/web_costs")
    token = csrf_of(page.text)
    r = client.post("/data/datasets/web_costs/publish", follow_redirects=False,
                    data={"csrf_token": token, "note": "from the console"},
                    files={"file": ("costs.csv", CSV.encode(), "text/csv")})
    assert r.status_code == 303 and "60+rows" in r.headers["location"]
    shown = commons.client.get("/api/v1/data/datasets/web_costs", headers=commons.member).json()
    assert shown["rows"] == 60 and shown["languages"] == ["en", "hi"] and shown["keywords"] == ["cost", "region"]
    ragged = client.post("/data/datasets/web_costs/publish",
                         data={"csrf_token": token}, files={"file": ("x.csv", b"a,b\n1,2,3\n4,5\n", "text/csv")})
    assert ragged.status_code == 422 and "line 2 has 3 fields but the header has 2" in ragged.text
    confirmed = client.post("/data/datasets/web_costs/publish", follow_redirects=False,
                            data={"csrf_token": token, "allow_ragged_rows": "1", "allow_schema_change": "1"},
                            files={"file": ("x.csv", b"a,b\n1,2,3\n4,5\n", "text/csv")})
    assert confirmed.status_code == 303 and "2+rows" in confirmed.headers["location"]
    assert "differ+from+the+header" in confirmed.headers["location"]
    forged = client.post("/data/datasets/web_costs/publish", data={"csrf_token": "forged"},
                         files={"file": ("costs.csv", CSV.encode(), "text/csv")})
    assert forged.status_code == 403
    _login(client, "analyst@test.example")
    r = client.post("/data/datasets/web_costs/publish", data={"csrf_token": csrf_of(client.get("/data").text)},
                    files={"file": ("costs.csv", CSV.encode(), "text/csv")})
    assert r.status_code == 403  # only the publisher's stewards
