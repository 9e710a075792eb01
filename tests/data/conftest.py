"""Fixtures of the data commons: a publishing organisation with a steward, members at home and abroad."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovstack.core import identity
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import MembershipCreate, OrganisationCreate
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
