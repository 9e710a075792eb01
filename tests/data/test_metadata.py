"""DCAT-AP and Croissant out: well-formed, complete, and Croissant valid by mlcroissant's own checks."""

from __future__ import annotations

import mlcroissant as mlc
import pytest

from tests.data.conftest import Commons


@pytest.fixture
def published(commons: Commons) -> Commons:
    commons.create("regional_costs", description="Costs by region (synthetic)", keywords=["health", "cost"],
                   languages=["en", "hi"], spatial="Synthetic districts", temporal_start="2024-01-01",
                   temporal_end="2024-12-31", provenance="Generated for tests")
    assert commons.publish("regional_costs").status_code == 201
    commons.create("clinic", classification="sensitive", entity_column="person_id")
    assert commons.publish("clinic").status_code == 201
    return commons


# mlcroissant's rdflib calls a deprecated rdflib class: the library's warning, not ours.
@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_croissant_validates_with_mlcroissant(published: Commons) -> None:
    r = published.client.get("/api/v1/data/datasets/regional_costs/croissant.json", headers=published.member)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")
    doc = r.json()
    dataset = mlc.Dataset(jsonld=doc)  # raises mlc.ValidationError on any error
    assert dataset.metadata.name == "regional_costs"
    fields = {f["name"]: f["dataType"] for f in doc["recordSet"][0]["field"]}
    assert fields == {"person_id": "sc:Text", "region": "sc:Text", "age": "sc:Integer", "cost": "sc:Integer"}
    assert doc["distribution"][0]["contentUrl"].endswith("/regional_costs/download?version=1")
    assert doc["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"


def test_dcat_ap_dataset_and_catalogue(published: Commons) -> None:
    doc = published.client.get("/api/v1/data/datasets/regional_costs/dcat.jsonld", headers=published.member).json()
    assert doc["@type"] == "dcat:Dataset" and doc["dct:identifier"] == "regional_costs"
    assert doc["dct:accessRights"]["@id"].endswith("/access-right/PUBLIC")
    assert doc["dct:temporal"]["dcat:startDate"]["@value"] == "2024-01-01"
    dist = doc["dcat:distribution"][0]
    assert dist["dcat:mediaType"] == "application/vnd.apache.parquet" and len(dist["spdx:checksum"]
                                                                              ["spdx:checksumValue"]) == 64
    assert dist["dcat:downloadURL"]["@id"].endswith("/download?version=1")
    catalogue = published.client.get("/api/v1/data/catalogue.jsonld", headers=published.member).json()
    assert catalogue["@type"] == "dcat:Catalog"
    by_name = {d["dct:identifier"]: d for d in catalogue["dcat:dataset"]}
    assert set(by_name) == {"regional_costs", "clinic"}
    clinic = by_name["clinic"]
    assert clinic["dct:accessRights"]["@id"].endswith("/NON_PUBLIC")
    assert "dcat:downloadURL" not in clinic["dcat:distribution"][0]  # sensitive data has no download
