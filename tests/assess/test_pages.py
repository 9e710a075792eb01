"""The assessor's console pages, in process: the live scorecard, a figure expanded, analysing a stack."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.assess.conftest import EXAMPLES, FIXTURES, small
from tests.conftest import PASSWORD
from tests.console.test_pages import csrf_of, post_login


def _console(client: TestClient, admin: dict[str, Any]) -> TestClient:
    assert post_login(client, admin["email"], PASSWORD).status_code == 303
    return client


def test_the_scorecard_shows_gate_score_pressures_layers_gaps_and_drills(client: TestClient,
                                                                          admin: dict[str, Any]) -> None:
    page = _console(client, admin).get("/assess")
    assert page.status_code == 200
    text = page.text
    for piece in ('id="assess-gate"', 'id="assess-score"', 'id="assess-gaps"', 'aria-label="Pressure radar"',
                  'aria-label="Per-layer points"', "What a drill would do", "Residual service over time",
                  "Control, Steer or Depend", "counted conservative", "core-database-"):
        assert piece in text, piece
    assert 'href="/assess/explain?mode=conservative&amp;key=pressures.data_protection"' in text
    assert 'href="/assess"' in client.get("/").text  # the dashboard lists the module
    strict = client.get("/assess", params={"mode": "strict", "profile": "ai-sovereignty"})
    assert "counted strict" in strict.text and "(ai-sovereignty)" in strict.text
    assert client.get("/assess", params={"mode": "lenient"}).status_code == 422


def test_explain_page_lists_the_answers_behind_a_number(client: TestClient, admin: dict[str, Any]) -> None:
    page = _console(client, admin).get("/assess/explain", params={"key": "layers.data"})
    assert page.status_code == 200 and 'id="explain-table"' in page.text
    assert "SOV3-HOSTING" in page.text and "core-database-" in page.text
    assert client.get("/assess/explain", params={"key": "nothing"}).status_code == 404


def test_analyse_a_pasted_manifest_inline_and_as_downloads(client: TestClient, admin: dict[str, Any]) -> None:
    form = _console(client, admin).get("/assess/analyse")
    token = csrf_of(form.text)
    text = (EXAMPLES / "hyperscaler-region.yaml").read_text()
    page = client.post("/assess/analyse", data={"csrf_token": token, "manifest": text, "mode": "conservative"})
    assert page.status_code == 200 and 'id="analyse-report"' in page.text and "<svg" in page.text
    assert 'id="figure-pressures.vendor_independence"' in page.text  # every number expands on the page
    download = client.post("/assess/analyse", data={"csrf_token": token, "manifest": text, "format": "html"})
    assert download.headers["content-type"].startswith("text/html") and "attachment" in download.headers[
        "content-disposition"]
    as_json = client.post("/assess/analyse", data={"csrf_token": token, "manifest": text, "format": "json"})
    assert as_json.json()["manifest"] == "Hyperscaler in-country region with a frontier model API"


def test_analyse_shows_every_problem_with_its_path(client: TestClient, admin: dict[str, Any]) -> None:
    token = csrf_of(_console(client, admin).get("/assess/analyse").text)
    doc = small(home="QQ")
    doc["components"][0]["supplier"] = "nobody"
    page = client.post("/assess/analyse", data={"csrf_token": token, "manifest": json.dumps(doc)})
    assert page.status_code == 422 and 'id="analyse-problems"' in page.text
    assert "components[0].supplier" in page.text and "unknown jurisdiction code" in page.text
    empty = client.post("/assess/analyse", data={"csrf_token": token, "manifest": " "})
    assert empty.status_code == 422 and "paste a manifest" in empty.text


def test_analyse_an_uploaded_cyclonedx_file(client: TestClient, admin: dict[str, Any]) -> None:
    token = csrf_of(_console(client, admin).get("/assess/analyse").text)
    bom = (FIXTURES / "stack.cdx.json").read_bytes()
    page = client.post("/assess/analyse", data={"csrf_token": token},
                       files={"file": ("stack.cdx.json", bom, "application/json")})
    assert page.status_code == 200 and 'id="analyse-missing"' in page.text and "CycloneDX" in page.text


def test_forged_posts_and_visitors_are_refused(client: TestClient, admin: dict[str, Any]) -> None:
    r = client.get("/assess", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    _console(client, admin)
    forged = client.post("/assess/analyse", data={"csrf_token": "wrong", "manifest": "name: x"})
    assert forged.status_code == 403
