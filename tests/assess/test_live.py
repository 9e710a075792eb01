"""The live self-assessment: this deployment scored from every module's inventory, moving as it changes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovstack.app import create_app
from sovstack.assess import live
from sovstack.core.db import Database
from sovstack.core.plugins import InventoryItem, hookimpl
from sovstack.core.settings import Settings
from tests.test_cli import cli


def _deployment(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "model": "assistant", "base_url": "http://127.0.0.1:9/v1", "upstream_model": name,
            "hosting_jurisdiction": "IN", "operator": "Desi Cloud", "developer": "Bharat Models",
            "licence": "Apache-2.0", "open_weights": True, **extra}


def _register(client: TestClient, *parties: tuple[str, str, str]) -> None:
    for name, kind, jurisdiction in parties:
        r = client.post("/api/v1/parties", json={"name": name, "kinds": [kind], "jurisdiction": jurisdiction})
        assert r.status_code == 201, r.text


def test_the_deployment_and_its_database_are_in_the_inventory(admin_client: TestClient, db: Database) -> None:
    items = {(i["module"], i["kind"]): i for i in admin_client.get("/api/v1/inventory").json()}
    backend = "SQLite" if db.settings.is_sqlite else "PostgreSQL"
    assert items[("core", "deployment")]["layer"] == "platform"
    assert items[("core", "database")]["name"] == backend and items[("core", "database")]["layer"] == "data"
    manifest = admin_client.get("/api/v1/assess/self/manifest").json()
    operator = next(p for p in manifest["parties"] if p["name"] == live.HOME_OPERATOR)
    assert operator["jurisdiction"] == db.settings.home_jurisdiction
    database = next(c for c in manifest["components"] if c["id"].startswith("core-database"))
    assert database["hosted_in"] == ["IN"] and database["layer"] == "data" and database["operator"] == operator["id"]


def test_a_foreign_hosted_closed_model_moves_the_live_scorecard(admin_client: TestClient) -> None:
    _register(admin_client, ("Desi Cloud", "model_host", "IN"), ("Bharat Models", "model_developer", "IN"),
              ("Frontier Labs", "model_developer", "US"))
    assert admin_client.post("/api/v1/gateway/models", json={"name": "assistant"}).status_code == 201
    assert admin_client.post("/api/v1/gateway/deployments", json=_deployment("local-open")).status_code == 201
    before = admin_client.get("/api/v1/assess/self").json()

    foreign = _deployment("frontier-us", hosting_jurisdiction="US", operator="Frontier Labs",
                          developer="Frontier Labs", licence="proprietary", open_weights=False)
    assert admin_client.post("/api/v1/gateway/deployments", json=foreign).status_code == 201
    after = admin_client.get("/api/v1/assess/self").json()

    component = "gateway-model-deployment-frontier-us"
    assert not any(r["component"] == component for r in before["results"])
    mine = [r for r in after["results"] if r["component"] == component]
    assert {r["criterion"] for r in mine} >= {"SOV3-HOSTING", "SOV2-OPERATOR"}
    assert next(r for r in mine if r["criterion"] == "SOV3-HOSTING")["declared"] == "foreign"
    assert after["layers"]["models"]["points"]["value"] < before["layers"]["models"]["points"]["value"]
    assert after["pressures"]["data_protection"]["value"] < before["pressures"]["data_protection"]["value"]
    assert after["score"]["value"] < before["score"]["value"]
    gate_setters = {after["results"][i]["component"] for i in after["gate"]["set_by"]}
    assert component in gate_setters  # the foreign deployment now holds the gate down too

    why = admin_client.get("/api/v1/assess/self/explain", params={"key": "layers.models"}).json()
    assert why["value"] == after["layers"]["models"]["points"]["value"]
    assert any(a["component"] == component and a["counted"] == "foreign" for a in why["answers"])
    missing = admin_client.get("/api/v1/assess/self/explain", params={"key": "pressures.nothing"})
    assert missing.status_code == 404 and "try one of" in missing.json()["error"]["message"]


def test_self_assessment_formats_and_modes(admin_client: TestClient) -> None:
    strict = admin_client.get("/api/v1/assess/self?mode=strict").json()
    tolerant = admin_client.get("/api/v1/assess/self?mode=tolerant").json()
    assert strict["mode"] == "strict" and tolerant["mode"] == "tolerant"
    assert {d["scenario"] for d in strict["drills"]} >= {"vendor-sanctions", "region-loss"}
    html = admin_client.get("/api/v1/assess/self?format=html")
    assert html.status_code == 200 and "<svg" in html.text
    assert admin_client.get("/api/v1/assess/self?format=cyclonedx").json()["bomFormat"] == "CycloneDX"


class ManyDatasets:
    """A module that manages a few hundred datasets, some stored abroad."""

    @hookimpl
    def sovstack_inventory(self, session: Any) -> list[InventoryItem]:
        return [InventoryItem(module="bulk", kind="dataset", name=f"set-{n}", layer="data", parties=("Bulk Co",),
                              jurisdiction="IN" if n % 3 else "US") for n in range(300)]


def test_the_live_assessment_is_quick_enough_for_a_page(settings: Settings) -> None:
    app = create_app(settings, plugins=[ManyDatasets()])
    try:
        with app.state.db.session() as session:
            started = time.perf_counter()
            run = live.live_assessment(session, app.state.plugins, settings)
            elapsed = time.perf_counter() - started
    finally:
        app.state.db.dispose()
    assert len(run.manifest.components) == 302 and run.assessment.drills
    assert elapsed < 3.0, f"the live scorecard took {elapsed:.2f} s for 302 components"


def test_the_demo_says_the_live_gate_and_score_and_can_run_twice(settings: Settings,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert cli(settings, "demo", "--no-serve") == 0
        out = capsys.readouterr().out
        line = next(x for x in out.splitlines() if "sovereignty self-assessment" in x)
        assert "gate level" in line and "weighted score" in line and "/assess" in line
    app = create_app(settings)
    try:
        with app.state.db.session() as session:
            manifest = live.live_manifest(session, app.state.plugins, settings)
    finally:
        app.state.db.dispose()
    kinds = {c.tags[1] for c in manifest.components}
    assert {"kind:model_deployment", "kind:dataset", "kind:deployment", "kind:database"} <= kinds
