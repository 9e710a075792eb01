"""DCAT-AP and Croissant out: well-formed, complete, and Croissant valid by mlcroissant's own checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import mlcroissant as mlc
import pyshacl
import pytest
import rdflib

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


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_croissant_types_nested_columns_as_repeated_and_sub_fields(commons: Commons, tmp_path: Path) -> None:
    parquet = tmp_path / "nested.parquet"
    duckdb.connect().execute(
        "COPY (SELECT 1 AS id, [1, 2] AS scores, {'lat': 12.9, 'place name': 'Bengaluru'} AS location, "
        "[{'code': 7, 'label': 'x'}] AS tags, MAP {'a': 1} AS counts, [[1], [2, 3]] AS grid, "
        f"INTERVAL 1 DAY AS wait, TIME '10:00' AS opens) TO '{parquet}' (FORMAT parquet)")
    commons.create("nested")
    assert commons.publish("nested", parquet.read_bytes(), fmt="parquet").status_code == 201
    doc = commons.client.get("/api/v1/data/datasets/nested/croissant.json", headers=commons.member).json()
    mlc.Dataset(jsonld=doc)  # still valid Croissant
    fields = {f["name"]: f for f in doc["recordSet"][0]["field"]}

    def shape(field: dict[str, Any]) -> Any:
        kind = field.get("dataType") or {sub["name"]: shape(sub) for sub in field["subField"]}
        return ["repeated", kind] if field.get("repeated") else kind

    assert {name: shape(f) for name, f in fields.items()} == {
        "id": "sc:Integer", "scores": ["repeated", "sc:Integer"],
        "location": {"lat": "sc:Float", "place name": "sc:Text"},
        "tags": ["repeated", {"code": "sc:Integer", "label": "sc:Text"}],
        "counts": ["repeated", {"key": "sc:Text", "value": "sc:Integer"}],
        "grid": ["repeated", {"element": ["repeated", "sc:Integer"]}],
        "wait": "sc:Text", "opens": "sc:Time"}  # an INTERVAL is not an integer
    place = fields["location"]["subField"][1]
    assert place["source"] == {"fileObject": {"@id": "nested-v1.parquet"}, "extract": {"column": "location"},
                               "transform": {"jsonPath": "$['place name']"}}
    assert fields["tags"]["subField"][0]["source"]["transform"] == {"jsonPath": "$[*].code"}


def test_dcat_ap_dataset_and_catalogue(published: Commons) -> None:
    doc = published.client.get("/api/v1/data/datasets/regional_costs/dcat.jsonld", headers=published.member).json()
    assert doc["@type"] == "dcat:Dataset" and doc["dct:identifier"] == "regional_costs"
    assert doc["dct:accessRights"]["@id"].endswith("/access-right/PUBLIC")
    assert doc["dct:temporal"]["dcat:startDate"]["@value"] == "2024-01-01"
    dist = doc["dcat:distribution"][0]
    assert dist["dcat:mediaType"]["@id"] == "https://www.iana.org/assignments/media-types/application/vnd.apache.parquet"
    assert dist["dct:format"]["@id"] == "http://publications.europa.eu/resource/authority/file-type/PARQUET"
    assert [lang["@id"].rsplit("/", 1)[1] for lang in doc["dct:language"]] == ["ENG", "HIN"]
    assert len(dist["spdx:checksum"]["spdx:checksumValue"]["@value"]) == 64
    assert dist["dcat:downloadURL"]["@id"].endswith("/download?version=1")
    catalogue = published.client.get("/api/v1/data/catalogue.jsonld", headers=published.member).json()
    assert catalogue["@type"] == "dcat:Catalog"
    by_name = {d["dct:identifier"]: d for d in catalogue["dcat:dataset"]}
    assert set(by_name) == {"regional_costs", "clinic"}
    clinic = by_name["clinic"]
    assert clinic["dct:accessRights"]["@id"].endswith("/NON_PUBLIC")
    assert "dcat:downloadURL" not in clinic["dcat:distribution"][0]  # sensitive data has no download


SHAPES = Path(__file__).parent / "shacl" / "dcat-ap-SHACL.ttl"  # the official DCAT-AP 3.0.1 shapes (README.md)


def _violations(doc: dict[str, Any]) -> str:
    """pyshacl's report of ``doc`` (JSON-LD) against the DCAT-AP shapes; empty when it conforms."""
    data = rdflib.Graph().parse(data=json.dumps(doc), format="json-ld")
    conforms, _, report = pyshacl.validate(data, shacl_graph=rdflib.Graph().parse(SHAPES))
    return "" if conforms else report


# rdflib's JSON-LD parser uses its own deprecated ConjunctiveGraph: the library's warning, not ours.
@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_dcat_ap_conforms_to_the_official_shapes(published: Commons) -> None:
    for url in ("/api/v1/data/datasets/regional_costs/dcat.jsonld", "/api/v1/data/datasets/clinic/dcat.jsonld",
                "/api/v1/data/catalogue.jsonld"):
        doc = published.client.get(url, headers=published.member).json()
        assert _violations(doc) == "", f"{url}:\n{_violations(doc)}"
    catalogue = published.client.get("/api/v1/data/catalogue.jsonld", headers=published.member).json()
    assert catalogue["dct:publisher"]["foaf:name"] == "sovstack" and catalogue["dct:description"]
    # The shapes do catch what was wrong before: plain strings where IRIs of a register belong.
    regional = next(d for d in catalogue["dcat:dataset"] if d["dct:identifier"] == "regional_costs")
    regional["dct:language"] = ["en"]
    assert "LinguisticSystem" in _violations({"@context": catalogue["@context"], **regional})
