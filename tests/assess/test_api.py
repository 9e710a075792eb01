"""The assessor's HTTP API through the real app: run, drill, diff, import, schemas, and its refusals."""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi.testclient import TestClient

from tests.assess.conftest import EXAMPLES, FIXTURES, small
from tests.conftest import LAUGHS, make_key, make_user

YAML = {"content-type": "application/yaml"}


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()),
                                                 default=str))  # YAML dates as the JSON strings they become
    return data


def test_a_worked_example_scores_the_same_as_json_and_as_yaml(admin_client: TestClient) -> None:
    as_json = admin_client.post("/api/v1/assess/run", json=_example("national-cloud"))
    as_yaml = admin_client.post("/api/v1/assess/run", content=(EXAMPLES / "national-cloud.yaml").read_text(),
                                headers=YAML)
    assert as_json.status_code == as_yaml.status_code == 200
    report = as_json.json()
    assert report == as_yaml.json()
    assert report["gate"]["level"] == 0 and 80 < report["score"]["value"] < 90  # the user guide's ≈ 83
    assert {d["scenario"] for d in report["drills"]} >= {"vendor-sanctions", "export-controls"}
    assert report["exit"], "exit readiness is part of the run"


def test_formats_and_explain(admin_client: TestClient) -> None:
    body = (EXAMPLES / "fully-domestic.yaml").read_text()
    html = admin_client.post("/api/v1/assess/run?format=html&scenarios=none", content=body, headers=YAML)
    assert html.status_code == 200 and html.text.startswith("<!doctype html>") and "<svg" in html.text
    assert "attachment" in html.headers["content-disposition"] and "http" not in html.text.split("<body>")[0]
    md = admin_client.post("/api/v1/assess/run?format=md", content=body, headers=YAML)
    assert md.text.startswith("# Sovereignty assessment") and "## Disruption drills" in md.text
    cdx = admin_client.post("/api/v1/assess/run?format=cyclonedx", content=body, headers=YAML).json()
    assert cdx["bomFormat"] == "CycloneDX" and cdx["specVersion"] == "1.6"
    why = admin_client.post("/api/v1/assess/run?explain=pressures.vendor_independence", content=body,
                            headers=YAML).json()
    assert why["figure"] == "pressures.vendor_independence" and why["answers"]
    assert {"criterion", "component", "counted", "points", "evidence"} <= set(why["answers"][0])
    one = admin_client.post("/api/v1/assess/run?scenarios=vendor-sanctions", content=body, headers=YAML).json()
    assert [d["scenario"] for d in one["drills"]] == ["vendor-sanctions"]


def test_every_schema_problem_comes_back_at_once_with_its_path(admin_client: TestClient) -> None:
    doc = small(home="QQ")
    doc["components"][0]["supplier"] = "nobody"
    doc["components"][1]["layer"] = "clouds"
    r = admin_client.post("/api/v1/assess/run", json=doc)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "invalid_request" and err["field"] == "manifest"
    assert any(p["path"] == "components[1].layer" for p in err["problems"])
    assert len(err["reasons"]) == len(err["problems"])
    doc["components"][1]["layer"] = "software"
    paths = {p["path"] for p in admin_client.post("/api/v1/assess/run", json=doc).json()["error"]["problems"]}
    assert {"home", "components[0].supplier"} <= paths


def test_a_cycle_and_bad_bodies_are_422_not_500(admin_client: TestClient) -> None:
    doc = small()
    doc["components"][0]["depends_on"] = ["app"]
    r = admin_client.post("/api/v1/assess/run", json=doc)
    assert r.status_code == 422
    assert r.json()["error"]["problems"] == [{"path": "components", "message": "dependency cycle: gpu → app → gpu"}]
    broken = admin_client.post("/api/v1/assess/run", content="name: [unclosed", headers=YAML)
    assert broken.status_code == 422 and "not valid YAML" in broken.json()["error"]["reasons"][0]
    wrong_type = admin_client.post("/api/v1/assess/run", content="a,b", headers={"content-type": "text/csv"})
    assert wrong_type.status_code == 422 and wrong_type.json()["error"]["field"] == "content-type"
    assert admin_client.post("/api/v1/assess/run?mode=lenient", json=small()).status_code == 422
    assert admin_client.post("/api/v1/assess/run?scenarios=meteor", json=small()).status_code == 404
    huge = admin_client.post("/api/v1/assess/run", content="#" * 2_000_000, headers=YAML)
    assert huge.status_code == 413


def test_anonymous_callers_are_refused(client: TestClient) -> None:
    for method, path in (("POST", "/api/v1/assess/run"), ("GET", "/api/v1/assess/self"),
                         ("GET", "/api/v1/assess/criteria"), ("POST", "/api/v1/assess/diff")):
        r = client.request(method, path, json=small())
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthenticated"


def test_a_read_only_key_may_analyse_and_a_key_without_read_may_not(client: TestClient, db: Any) -> None:
    user = make_user(db, "analyst@test.example")
    reader = make_key(db, user["id"], ["read"])
    r = client.post("/api/v1/assess/run", json=small(), headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 200
    other = make_key(db, user["id"], ["gateway"])
    r = client.post("/api/v1/assess/run", json=small(), headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403 and "read scope" in r.json()["error"]["message"]


def test_diff_of_two_examples_shows_what_moved_and_why(admin_client: TestClient) -> None:
    before, after = _example("hyperscaler-region"), _example("fully-domestic")
    r = admin_client.post("/api/v1/assess/diff", json={"before": before, "after": after})
    assert r.status_code == 200
    moves = {m["figure"]: m for m in r.json()["moves"]}
    assert moves["score"]["after"] > moves["score"]["before"] and moves["score"]["delta"] > 0
    assert any(m["why"] for m in moves.values())
    saved = admin_client.post("/api/v1/assess/run", json=before).json()  # a saved JSON report diffs too
    md = admin_client.post("/api/v1/assess/diff?format=md", json={"before": saved, "after": after})
    assert md.status_code == 200 and "| score |" in md.text
    bad = small()
    bad["components"][0]["supplier"] = "nobody"
    r = admin_client.post("/api/v1/assess/diff", json={"before": before, "after": bad})
    assert r.status_code == 422 and r.json()["error"]["problems"][0]["path"] == "after.components[0].supplier"


def test_drill_import_schema_scenarios_and_criteria(admin_client: TestClient) -> None:
    drills = admin_client.post("/api/v1/assess/drill?scenarios=vendor-sanctions",
                               content=(EXAMPLES / "hyperscaler-region.yaml").read_text(), headers=YAML).json()
    assert [d["scenario"] for d in drills] == ["vendor-sanctions"] and drills[0]["residual_final"] == 0
    bom = json.loads((FIXTURES / "stack.cdx.json").read_text())
    imported = admin_client.post("/api/v1/assess/import?home=in&as_of=2026-06-30", json=bom)
    assert imported.status_code == 200
    body = imported.json()
    assert body["source_format"].startswith("CycloneDX") and body["missing"]
    assert body["manifest"]["home"] == "IN" and len(body["manifest"]["components"]) >= 4
    assert admin_client.post("/api/v1/assess/run", json=body["manifest"]).status_code == 200
    old = admin_client.post("/api/v1/assess/import", json={"spdxVersion": "SPDX-2.3"})
    assert old.status_code == 422 and "SPDX 3.0" in old.json()["error"]["message"]
    assert "components" in admin_client.get("/api/v1/assess/schema/manifest").json()["properties"]
    assert "gate" in admin_client.get("/api/v1/assess/schema/report").json()["properties"]
    assert admin_client.get("/api/v1/assess/schema/other").status_code == 404
    ids = {s["id"] for s in admin_client.get("/api/v1/assess/scenarios").json()}
    assert {"vendor-sanctions", "export-controls"} <= ids
    criteria = admin_client.get("/api/v1/assess/criteria").json()
    assert criteria["criteria"] and criteria["sources"] and {p["id"] for p in criteria["profiles"]} >= {
        "eu-csf-document", "ai-sovereignty"}
    assert admin_client.get("/api/v1/assess/criteria?name=../../etc/passwd").status_code == 422


def test_deep_aliased_undecodable_and_empty_documents_are_422_naming_the_problem(admin_client: TestClient) -> None:
    """Bodies the assessor parses itself (#14): never a 500, and never gigabytes for a few hundred bytes."""
    deep = "[" * 100_000 + "]" * 100_000
    cases = [
        (deep, {"content-type": "application/json"}, "body: nested more than 100 levels deep"),
        ("name: " + deep, YAML, "body: not valid YAML: exceeded maximum nesting depth"),
        (LAUGHS + "languages: *i\n", YAML, "body: its YAML aliases expand it to over 100,000 values"),
        ("name: Café".encode("latin-1"), YAML, "body: not UTF-8 text (byte 0xe9 at line 1, column 10)"),
        ("  \n", YAML, "body: empty: no YAML or JSON in it"),
    ]
    for path in ("/api/v1/assess/run", "/api/v1/assess/drill", "/api/v1/assess/import"):
        for body, headers, problem in cases:
            r = admin_client.post(path, content=body, headers=headers)
            assert r.status_code == 422, (path, problem, r.text)
            error = r.json()["error"]
            assert problem in error["message"] + " ".join(error["reasons"]), (path, error)


def test_a_malformed_bom_is_422_with_the_path_of_its_problem(admin_client: TestClient) -> None:
    r = admin_client.post("/api/v1/assess/import", json={"bomFormat": "CycloneDX", "specVersion": "1.6",
                                                         "components": [{"name": "x", "supplier": "Acme"}]})
    assert r.status_code == 422
    assert r.json()["error"]["message"] == ("body: cannot be imported as CycloneDX 1.6: components[0].supplier: "
                                            "Input should be an object")
