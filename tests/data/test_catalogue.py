"""Publishing datasets: metadata rules, immutable content-addressed versions, bad files, search and facets."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovstack.app import create_app
from sovstack.cli import run
from sovstack.core.tables import AuditEvent
from sovstack.data.tables import DatasetVersion
from tests.conftest import start_server, stop_server
from tests.data.conftest import CSV, Commons


def test_publish_streams_a_csv_into_a_content_addressed_parquet_version(commons: Commons) -> None:
    commons.create("regional_costs")
    r = commons.publish("regional_costs", note="first cut")
    assert r.status_code == 201, r.text
    v = r.json()
    assert (v["number"], v["rows"], v["source_format"], v["note"]) == (1, 60, "csv", "first cut")
    assert [(c["name"], c["type"]) for c in v["columns"]] == [("person_id", "VARCHAR"), ("region", "VARCHAR"),
                                                              ("age", "BIGINT"), ("cost", "BIGINT")]
    assert v["columns"][2]["stats"]["min"] == "20"  # open data: statistics are shown
    obj = commons.home / "objects" / "data" / v["sha256"][:2] / f"{v['sha256']}.parquet"
    assert hashlib.sha256(obj.read_bytes()).hexdigest() == v["sha256"]
    total = duckdb.connect().execute(f"SELECT sum(cost) FROM '{obj}'").fetchone()
    assert total == (sum(100 + i for i in range(60)),)
    shown = commons.client.get("/api/v1/data/datasets/regional_costs", headers=commons.member).json()
    assert shown["current_version"] == 1 and shown["rows"] == 60
    assert not list((commons.home / "objects" / "tmp").iterdir())  # nothing left over


def test_jsonl_and_parquet_uploads(commons: Commons, tmp_path: Path) -> None:
    commons.create("lines")
    r = commons.publish("lines", '{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n', fmt="jsonl")
    assert r.status_code == 201 and r.json()["rows"] == 2
    parquet = tmp_path / "x.parquet"
    duckdb.connect().execute(f"COPY (SELECT 1::BIGINT AS a, 'z' AS b) TO '{parquet}' (FORMAT parquet)")
    r = commons.publish("lines", parquet.read_bytes(), fmt="parquet")
    assert r.status_code == 201 and r.json()["number"] == 2 and r.json()["rows"] == 1, r.text


@pytest.mark.parametrize(("content", "says"), [
    (b"", "empty (0 bytes)"),
    (b"a,b\n", "no rows"),
    (b"a,b\n1,2\n3,4,5\n6,7\n", "line 3 has 3 fields but the header has 2"),
    (b"a,b\n1,\xff\xfe\n", "line 2 of the CSV file is not utf-8 text"),
])
def test_bad_files_are_refused_and_the_current_version_stays(commons: Commons, content: bytes, says: str) -> None:
    commons.create("kept")
    assert commons.publish("kept").status_code == 201
    r = commons.publish("kept", content)
    assert r.status_code == 422 and says in r.json()["error"]["message"], r.text
    assert r.json()["error"]["field"] == "file"
    shown = commons.client.get("/api/v1/data/datasets/kept", headers=commons.steward).json()
    assert shown["current_version"] == 1 and shown["rows"] == 60
    with commons.db.session() as s:
        assert len(s.scalars(select(DatasetVersion)).all()) == 1


def test_a_10000_column_open_upload_is_published_without_statistics_and_says_so(commons: Commons) -> None:
    commons.create("very_wide")
    width = 10_000
    body = ",".join(f"c{i}" for i in range(width)) + "\n" + "".join(
        ",".join(str(r * i) for i in range(width)) + "\n" for r in range(3))
    r = commons.publish("very_wide", body, note="census extract")
    assert r.status_code == 201, r.text[:500]
    version = r.json()
    assert version["rows"] == 3 and len(version["columns"]) == width
    assert not any("stats" in c for c in version["columns"])
    assert version["note"] == ("census extract [no column statistics: 10,000 columns, statistics are computed "
                               "for files of up to 1,000]")
    # Up to the bound, every column has its statistics (queried in batches).
    commons.create("wide_enough")
    body = ",".join(f"c{i}" for i in range(1000)) + "\n" + ",".join("7" for _ in range(1000)) + "\n"
    version = commons.publish("wide_enough", body).json()
    assert all(c["stats"]["min"] == "7" for c in version["columns"]) and version["note"] == ""


def _left_behind(staging: Path, name: str, hours_ago: float) -> Path:
    """A staging file as a killed upload leaves it: last written ``hours_ago``."""
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / name
    path.write_bytes(b"person_id,region\nP1,No")
    when = time.time() - hours_ago * 3600
    os.utime(path, (when, when))
    return path


def test_staging_files_of_killed_uploads_are_removed_at_start_and_on_each_upload(commons: Commons) -> None:
    staging = commons.home / "objects" / "tmp"
    stale, live = _left_behind(staging, "upload-killed", 25), _left_behind(staging, "upload-in-flight", 0.1)
    with TestClient(create_app(commons.db.settings)) as restarted:  # a worker (re)starts
        assert restarted.get("/healthz").status_code == 200
    assert not stale.exists() and live.exists()  # older than data_staging_max_age_hours (24) only
    stale = _left_behind(staging, "0123abcd.parquet", 48)
    commons.create("cleaned")
    assert commons.publish("cleaned").status_code == 201
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in staging.iterdir()) == ["upload-in-flight"]  # the upload left nothing either


def test_a_schema_change_needs_to_be_asked_for(commons: Commons) -> None:
    commons.create("shifting")
    assert commons.publish("shifting").status_code == 201
    r = commons.publish("shifting", "person_id,region,weight\nP1,North,3.5\n")
    assert r.status_code == 422 and "columns differ" in r.json()["error"]["message"]
    assert any("age BIGINT" in reason for reason in r.json()["error"]["reasons"])
    r = commons.publish("shifting", "person_id,region,weight\nP1,North,3.5\n", allow_schema_change="true")
    assert r.status_code == 201 and r.json()["number"] == 2


def test_metadata_is_validated(commons: Commons) -> None:
    base = {"name": "bad_one", "title": "t", "publisher_id": commons.publisher, "classification": "open",
            "storage_jurisdiction": "IN", "licence": "CC-BY-4.0"}
    wrongs = [("licence", "CC-BY-9.9"), ("storage_jurisdiction", "XX"), ("classification", "secret"),
              ("languages", ["english!"]), ("name", "Bad Name")]
    for field, value in wrongs:
        r = commons.client.post("/api/v1/data/datasets", json={**base, field: value}, headers=commons.steward)
        assert r.status_code == 422 and r.json()["error"]["field"].split(".")[0] == field, (field, r.text)
    r = commons.client.post("/api/v1/data/datasets", json={**base, "licence": "cc-by-4.0"}, headers=commons.steward)
    assert r.status_code == 201 and r.json()["licence"] == "CC-BY-4.0"


def test_sensitive_data_stored_abroad_is_refused_with_reasons(commons: Commons) -> None:
    r = commons.client.post("/api/v1/data/datasets", headers=commons.steward, json={
        "name": "abroad", "title": "t", "publisher_id": commons.publisher, "classification": "sensitive",
        "storage_jurisdiction": "US", "licence": "CC-BY-4.0"})
    assert r.status_code == 403
    assert "may not be stored in US" in r.json()["error"]["message"] and r.json()["error"]["reasons"]
    with commons.db.session() as s:
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "data.dataset.store")).all()
        assert [e.outcome for e in refused] == ["refused"]


def test_only_the_publishers_stewards_publish(commons: Commons) -> None:
    commons.create("theirs")
    r = commons.client.post("/api/v1/data/datasets/theirs/versions", content=CSV.encode(),
                            params={"format": "csv"}, headers=commons.member)
    assert r.status_code == 403 and "steward" in r.json()["error"]["message"]
    r = commons.client.post("/api/v1/data/datasets", headers=commons.member, json={
        "name": "mine", "title": "t", "publisher_id": commons.publisher, "classification": "open",
        "storage_jurisdiction": "IN", "licence": "CC0-1.0"})
    assert r.status_code == 403


def test_search_ranks_matches_and_counts_facets(commons: Commons) -> None:
    commons.create("rainfall_daily", description="Daily rainfall by district", keywords=["climate"])
    commons.create("school_roll", classification="restricted", description="Pupils per school",
                   licence="CC0-1.0", languages=["hi", "en"])
    commons.create("clinic_costs", classification="sensitive", description="Costs of clinic visits by region",
                   entity_column="person_id")
    assert commons.publish("clinic_costs").status_code == 201
    get = commons.client.get
    found = get("/api/v1/data/datasets", params={"q": "rain"}, headers=commons.member).json()
    assert [d["name"] for d in found["datasets"]] == ["rainfall_daily"]
    found = get("/api/v1/data/datasets", params={"q": "region"}, headers=commons.member).json()  # a column name
    assert {d["name"] for d in found["datasets"]} == {"clinic_costs"}
    everything = get("/api/v1/data/datasets", headers=commons.member).json()
    assert everything["total"] == 3
    assert everything["facets"]["classification"] == {"open": 1, "restricted": 1, "sensitive": 1}
    assert everything["facets"]["language"] == {"en": 3, "hi": 1}
    assert everything["facets"]["format"] == {"none": 2, "csv": 1}
    only = get("/api/v1/data/datasets", params={"licence": "CC0-1.0", "language": "hi"}, headers=commons.member)
    assert [d["name"] for d in only.json()["datasets"]] == ["school_roll"]
    assert get("/api/v1/data/datasets", params={"q": '"; DROP TABLE x; --'}, headers=commons.member).status_code == 200
    assert get("/api/v1/data/datasets").status_code == 401


def test_the_cli_creates_publishes_lists_and_shows(commons: Commons, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(commons.home)]
    csv = tmp_path / "costs.csv"
    csv.write_text(CSV)
    assert run([*home, "data", "create", "cli_costs", "--title", "Costs (synthetic)", "--publisher",
                "Synthetic Statistics Office", "--licence", "CC-BY-4.0", "--classification", "restricted",
                "--storage", "IN", "--language", "en"]) == 0
    assert run([*home, "data", "publish", "cli_costs", str(csv)]) == 0
    assert "60 rows" in capsys.readouterr().out
    assert run([*home, "data", "list", "costs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in listed] == ["cli_costs"] and listed[0]["columns"][0].get("stats") is None
    assert run([*home, "data", "create", "x", "--title", "t", "--publisher", "Synthetic Statistics Office",
                "--licence", "Nope-1.0", "--classification", "open", "--storage", "IN"]) == 2
    assert run([*home, "data", "publish", "cli_costs", str(csv), "--format", "xlsx"]) == 2


@pytest.mark.server
def test_an_upload_cut_off_half_way_publishes_nothing(commons: Commons) -> None:
    commons.create("cut")
    srv = start_server(commons.db.settings)
    try:
        host, port = srv.url.removeprefix("http://").split(":")
        token = commons.steward["Authorization"]
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall((f"POST /api/v1/data/datasets/cut/versions?format=csv HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: {token}\r\nContent-Length: 100000\r\n\r\n").encode() + CSV.encode())
        r = commons.client.get("/api/v1/data/datasets/cut", headers=commons.steward)
    finally:
        stop_server(srv)
    assert r.json()["current_version"] == 0
    staging = commons.home / "objects" / "tmp"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_a_wrong_inferred_type_is_corrected_by_a_new_version(commons: Commons, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    commons.create("codes")
    assert commons.publish("codes", "code,label\n11,a\n12,b\n").status_code == 201
    assert commons.client.get("/api/v1/data/datasets/codes", headers=commons.member).json()["columns"][0][
        "type"] == "BIGINT"  # inferred a number; the steward knows these are identifiers (text)
    r = commons.client.post("/api/v1/data/datasets/codes/columns/label/type", json={"type": "DATE"},
                            headers=commons.steward)
    assert r.status_code == 422 and "2 values of label are not DATE" in r.json()["error"]["message"]
    r = commons.client.post("/api/v1/data/datasets/codes/columns/code/type", json={"type": "varchar"},
                            headers=commons.steward)
    assert r.status_code == 201 and r.json()["number"] == 2 and "code as VARCHAR" in r.json()["note"]
    assert r.json()["columns"][0]["type"] == "VARCHAR"
    assert commons.client.post("/api/v1/data/datasets/codes/columns/code/type", json={"type": "BLOB"},
                               headers=commons.steward).status_code == 422
    assert commons.client.post("/api/v1/data/datasets/codes/columns/code/type", json={"type": "BIGINT"},
                               headers=commons.member).status_code == 403
    versions = commons.client.get("/api/v1/data/datasets/codes/versions", headers=commons.member).json()
    assert [v["columns"][0]["type"] for v in versions] == ["BIGINT", "VARCHAR"]  # version 1 untouched
    assert run(["--home", str(commons.home), "data", "retype", "codes", "code", "BIGINT"]) == 0
    assert "version 3" in capsys.readouterr().out
