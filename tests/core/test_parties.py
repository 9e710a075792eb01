"""The party registry and the shipped jurisdiction data."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sovstack.core.jurisdictions import catalogue

SUBSIDIARY = {"name": "Hyperscaler India", "kinds": ["compute_provider", "model_host"], "jurisdiction": "in",
              "ultimate_parent": "Hyper Inc", "parent_jurisdiction": "US"}


def test_party_with_foreign_parent_shows_exposure(admin_client: TestClient) -> None:
    r = admin_client.post("/api/v1/parties", json=SUBSIDIARY)
    assert r.status_code == 201
    party = r.json()
    assert party["jurisdiction"] == "IN" and party["parent_jurisdiction"] == "US"
    assert any("18 U.S.C. §2713" in law for law in party["extraterritorial_laws"])
    domestic = admin_client.post("/api/v1/parties", json={"name": "Desi Cloud", "kinds": ["compute_provider"],
                                                          "jurisdiction": "IN"}).json()
    assert domestic["parent_jurisdiction"] == "IN" and domestic["extraterritorial_laws"] == []
    listed = admin_client.get("/api/v1/parties", params={"jurisdiction": "US"}).json()
    assert [p["name"] for p in listed] == ["Hyperscaler India"]
    by_kind = admin_client.get("/api/v1/parties", params={"kind": "model_host"}).json()
    assert [p["name"] for p in by_kind] == ["Hyperscaler India"]


def test_party_bad_input(admin_client: TestClient) -> None:
    r = admin_client.post("/api/v1/parties", json={**SUBSIDIARY, "parent_jurisdiction": "UK"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "parent_jurisdiction"
    r = admin_client.post("/api/v1/parties", json={**SUBSIDIARY, "kinds": ["wizard"]})
    assert r.status_code == 422 and r.json()["error"]["field"].startswith("kinds")
    assert admin_client.post("/api/v1/parties", json=SUBSIDIARY).status_code == 201
    r = admin_client.post("/api/v1/parties", json=SUBSIDIARY)
    assert r.status_code == 409 and r.json()["error"]["field"] == "name"
    assert len(admin_client.get("/api/v1/parties").json()) == 1


def test_update_party(admin_client: TestClient) -> None:
    pid = admin_client.post("/api/v1/parties", json=SUBSIDIARY).json()["id"]
    r = admin_client.patch(f"/api/v1/parties/{pid}", json={"parent_jurisdiction": "IN", "ultimate_parent": ""})
    assert r.status_code == 200 and r.json()["extraterritorial_laws"] == []
    assert admin_client.get(f"/api/v1/parties/{pid}").json()["parent_jurisdiction"] == "IN"
    assert admin_client.get("/api/v1/parties/9999").status_code == 404


def test_jurisdiction_data_has_sources(admin_client: TestClient) -> None:
    data = admin_client.get("/api/v1/jurisdictions").json()
    codes = {c["code"] for c in data["countries"]}
    assert len(codes) == 249 and {"IN", "FR", "US", "CN", "GB"} <= codes
    assert all(law["source"] and law["citation"] for law in data["laws"])
    assert any(law["citation"] == "18 U.S.C. §2713" for law in data["laws"])
    assert all(r["source"] for r in data["export_control_regimes"])
    eu = next(b for b in data["blocs"] if b["code"] == "EU")
    assert len(eu["members"]) == 27 and "FR" in eu["members"] and "GB" not in eu["members"]
    us = admin_client.get("/api/v1/jurisdictions/us").json()
    assert us["country"]["code"] == "US" and us["laws"]
    fr = admin_client.get("/api/v1/jurisdictions/FR").json()
    assert "EU" in fr["blocs"]
    assert admin_client.get("/api/v1/jurisdictions/EU").json()["bloc"]["code"] == "EU"
    r = admin_client.get("/api/v1/jurisdictions/ZZ")
    assert r.status_code == 404


def test_bloc_members_are_known_countries() -> None:
    cat = catalogue()
    for bloc in cat.blocs.values():
        assert set(bloc.members) <= set(cat.countries)
    for law in cat.laws:
        assert law.jurisdiction in cat.countries
