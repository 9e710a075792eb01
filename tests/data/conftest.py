"""Fixtures of the data commons: a publishing organisation with a steward, members at home and abroad;
Parquet files written by DuckDB once per run, and the grants the sandbox tests query them under."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from sovstack.core import identity
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import MembershipCreate, OrganisationCreate
from sovstack.data.sandbox import GrantedTable
from tests.conftest import make_key, make_user

OPERATOR = Principal.system("test")
CSV = "person_id,region,age,cost\n" + "".join(f"P{i:04d},{['North', 'South'][i % 2]},{20 + i % 50},{100 + i}\n"
                                              for i in range(60))


@dataclass
class Commons:
    client: TestClient
    db: Database
    publisher: int
    steward: dict[str, str]
    member: dict[str, str]
    member_org: int
    foreigner: dict[str, str]
    admin: dict[str, str]
    home: Path

    def create(self, name: str, classification: str = "open", **extra: Any) -> dict[str, Any]:
        body = {"name": name, "title": f"{name} (test)", "description": "Synthetic test data about regions.",
                "publisher_id": self.publisher, "licence": "CC-BY-4.0", "classification": classification,
                "storage_jurisdiction": "IN", "languages": ["en"], "keywords": ["test"], **extra}
        r = self.client.post("/api/v1/data/datasets", json=body, headers=self.steward)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def publish(self, name: str, content: bytes | str = CSV, fmt: str = "csv", **params: Any) -> Any:
        data = content.encode() if isinstance(content, str) else content
        return self.client.post(f"/api/v1/data/datasets/{name}/versions", content=data,
                                params={"format": fmt, **params}, headers=self.steward)


def _org(db: Database, name: str, jurisdiction: str) -> int:
    with db.session() as s, unit_of_work(s, OPERATOR):
        org = identity.create_organisation(s, OPERATOR, OrganisationCreate(name=name, kind="government",
                                                                           jurisdiction=jurisdiction))
        return org.id


def _member(db: Database, email: str, org: int, role: str) -> dict[str, str]:
    user = make_user(db, email)
    with db.session() as s, unit_of_work(s, OPERATOR):
        identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user["id"], organisation_id=org, role=role))
    return {"Authorization": f"Bearer {make_key(db, user['id'], ['read', 'write'])}"}


@pytest.fixture
def commons(client: TestClient, db: Database) -> Commons:
    publisher = _org(db, "Synthetic Statistics Office", "IN")
    member_org = _org(db, "Synthetic University", "IN")
    abroad = _org(db, "Overseas Analytics Inc (synthetic)", "US")
    admin = make_user(db, "data-admin@test.example", admin=True)
    return Commons(client, db, publisher, _member(db, "steward@test.example", publisher, "steward"),
                   _member(db, "analyst@test.example", member_org, "member"), member_org,
                   _member(db, "abroad@test.example", abroad, "member"),
                   {"Authorization": f"Bearer {make_key(db, admin['id'], ['read', 'write', 'admin'])}"},
                   db.settings.home)


# 60 people with 1-3 visits each (1 + id % 3). Regions by person: north 0-29 (30 people), south 30-39
# (exactly 10), east 40-44 (5, below k), west 45-59 (15; person 45's one visit dwarfs the rest).
VISITS = """
    SELECT p AS person_id, 'person ' || p AS name,
           CASE WHEN p < 30 THEN 'north' WHEN p < 40 THEN 'south' WHEN p < 45 THEN 'east' ELSE 'west' END AS region,
           CASE WHEN p = 45 THEN 100000 ELSE 10 END AS amount,
           CAST(DATE '2024-01-01' + INTERVAL (v) DAY AS DATE) AS visit_date
    FROM range(60) people(p), range(3) visits(v)
    WHERE v <= p % 3
"""
REGIONS = "SELECT * FROM (VALUES ('north', 'N'), ('south', 'S'), ('east', 'E'), ('west', 'W')) t(region, code)"
SECRET_TEXT = "the launch codes are 0000"


@dataclass(frozen=True)
class Files:
    visits: Path
    regions: Path
    secret: Path


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("parquet")
    made = Files(folder / "visits.parquet", folder / "regions.parquet", folder / "secret.parquet")
    with duckdb.connect(":memory:") as conn:
        conn.execute(f"COPY ({VISITS}) TO '{made.visits}' (FORMAT parquet)")
        conn.execute(f"COPY ({REGIONS}) TO '{made.regions}' (FORMAT parquet)")
        conn.execute(f"COPY (SELECT '{SECRET_TEXT}' AS text) TO '{made.secret}' (FORMAT parquet)")
    return made


@pytest.fixture(scope="session")
def tables(files: Files) -> list[GrantedTable]:
    """clinic_visits (aggregate, k=10, rounding 5, dominance top 2 < 90%); visits_full and regions (full)."""
    return [
        GrantedTable("clinic_visits", files.visits, "aggregate", entity_column="person_id"),
        GrantedTable("visits_full", files.visits, "full"),
        GrantedTable("regions", files.regions, "full"),
    ]
