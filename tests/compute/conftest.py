"""Fixtures of the compute exchange: three providers (domestic, a foreign-parented local one, a foreign
one), a programme with caps, and applicants, a reviewer and provider staff, each with their own API key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sovstack.core import identity, parties
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import MembershipCreate, OrganisationCreate, PartyCreate
from tests.conftest import make_key, make_user

OPERATOR = Principal.system("test")
START = date(2026, 11, 2)  # a Monday; the programme runs 8 weeks from here


@dataclass
class Exchange:
    client: TestClient
    db: Database
    admin: dict[str, str]
    applicant: dict[str, str]
    reviewer: dict[str, str]
    conflicted: dict[str, str]  # a reviewer who belongs to the applicant's university
    staff: dict[str, str]  # works for the domestic provider
    stranger: dict[str, str]  # a signed-in member of nothing relevant
    orgs: dict[str, str]

    def post(self, path: str, body: dict[str, Any], who: dict[str, str] | None = None) -> Any:
        return self.client.post(f"/api/v1/compute{path}", json=body, headers=who or self.admin)

    def get(self, path: str, who: dict[str, str] | None = None, **params: Any) -> Any:
        return self.client.get(f"/api/v1/compute{path}", headers=who or self.admin, params=params)

    def offer(self, provider: str, gpu: str = "H100", gpus: int = 16, price: float = 100.0, **extra: Any) -> int:
        body = {"provider": provider, "gpu_type": gpu, "gpu_count": gpus, "price": price,
                "available_from": str(START), "available_until": str(START + timedelta(days=8 * 7 - 1)),
                "delivery": "delivered", "benchmark": "acceptance run (test)", **extra}
        r = self.post("/offers", body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def programme(self, name: str = "ccp", **extra: Any) -> dict[str, Any]:
        body = {"name": name, "title": f"{name} (test)", "budget": 1_000_000, "subsidy_rate": 0.4,
                "eligible_kinds": ["academic", "startup", "government"], "fast_track_gpu_hours": 100,
                "caps": {}, "start": str(START),
                "periods": 8, "idle_days": 14, "time_limit": 5, **extra}
        r = self.post("/programmes", body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def open_round(self, programme: str = "ccp") -> None:
        r = self.post(f"/programmes/{programme}/rounds", {"review_deadline": str(START + timedelta(days=7))})
        assert r.status_code == 201, r.text

    def apply(self, title: str, gpu_hours: float, gpus: int = 8, programme: str = "ccp", org: str = "university",
              **extra: Any) -> dict[str, Any]:
        body = {"programme": programme, "organisation": self.orgs[org], "title": title, "gpu_types": ["H100"],
                "gpus_per_job": gpus, "gpu_hours": gpu_hours, "earliest_period": 0, "latest_period": 7,
                "data_classification": "open", **extra}
        r = self.post("/requests", body, self.applicant)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def review(self, request_id: int, score: float) -> None:
        r = self.post(f"/requests/{request_id}/reviews", {"score": score}, self.reviewer)
        assert r.status_code == 201, r.text

    def allocate(self, programme: str = "ccp") -> dict[str, Any]:
        r = self.post(f"/programmes/{programme}/allocate", {})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def requests(self, programme: str = "ccp") -> dict[int, dict[str, Any]]:
        return {r["id"]: r for r in self.get("/requests", programme=programme).json()}

    def allocations(self, **params: Any) -> list[dict[str, Any]]:
        r = self.get("/allocations", **params)
        assert r.status_code == 200, r.text
        return list(r.json())


def _org(s: Any, name: str, kind: str, jurisdiction: str = "IN") -> int:
    return identity.create_organisation(s, OPERATOR, OrganisationCreate(name=name, kind=kind,
                                                                        jurisdiction=jurisdiction)).id


def _person(db: Database, email: str, roles: list[tuple[int, str]], admin: bool = False,
            report: bool = False) -> dict[str, str]:
    user = make_user(db, email, admin=admin)
    with db.session() as s, unit_of_work(s, OPERATOR):
        for org_id, role in roles:
            identity.add_membership(s, OPERATOR, MembershipCreate(user_id=user["id"], organisation_id=org_id,
                                                                  role=role))
    scopes = ["read", "write", "admin"] if admin else ["read", "write"]
    if report:  # a provider's staff key also reports usage
        scopes.append("compute.report")
    return {"Authorization": f"Bearer {make_key(db, user['id'], scopes)}"}


@pytest.fixture
def exchange(client: TestClient, db: Database) -> Exchange:
    with db.session() as s, unit_of_work(s, OPERATOR):
        orgs = {"university": _org(s, "Test University", "academic"), "startup": _org(s, "Test Startup", "startup"),
                "ministry": _org(s, "Test Ministry", "government"), "provider": _org(s, "Domestic GPU Staff",
                                                                                       "provider"),
                "abroad": _org(s, "Foreign Lab", "academic", "US")}
        for name, jur, parent, pj in (("Domestic Cloud", "IN", "", None), ("Hyper Local", "IN", "Hyper Inc", "US"),
                                      ("Euro Cloud", "FR", "", None)):
            parties.create_party(s, OPERATOR, PartyCreate(name=name, kinds=["compute_provider"], jurisdiction=jur,
                                                          ultimate_parent=parent, parent_jurisdiction=pj))
    ex = Exchange(client=client, db=db, admin=_person(db, "admin@test.example", [], admin=True),
                  applicant=_person(db, "applicant@test.example", [(orgs["university"], "member"),
                                                                   (orgs["startup"], "member"),
                                                                   (orgs["abroad"], "member")]),
                  reviewer=_person(db, "reviewer@test.example", [(orgs["ministry"], "reviewer")]),
                  conflicted=_person(db, "conflicted@test.example", [(orgs["ministry"], "reviewer"),
                                                                     (orgs["university"], "member")]),
                  staff=_person(db, "staff@test.example", [(orgs["provider"], "member")], report=True),
                  stranger=_person(db, "stranger@test.example", [(orgs["ministry"], "member")]),
                  orgs={"university": "Test University", "startup": "Test Startup", "ministry": "Test Ministry",
                        "abroad": "Foreign Lab"})
    for name, party, dc, cp, staff in (("domestic", "Domestic Cloud", "IN", "IN", "Domestic GPU Staff"),
                                       ("hyper", "Hyper Local", "IN", "US", None),
                                       ("euro", "Euro Cloud", "FR", "FR", None)):
        r = ex.post("/providers", {"name": name, "party": party, "organisation": staff,
                                   "datacentre_jurisdiction": dc, "control_plane_jurisdiction": cp})
        assert r.status_code == 201, r.text
    return ex
