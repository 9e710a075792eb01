"""Sandbox queries through the API and the CLI: grants checked at use, history and audit of every query."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from sovstack.cli import run
from sovstack.core.base import utcnow
from sovstack.core.tables import AuditEvent
from sovstack.data.tables import AccessGrant
from tests.data.conftest import Commons

PURPOSE = {"purpose": "Aggregate visits by region (synthetic)", "days": 30}


def _query(commons: Commons, sql: str, who: dict[str, str] | None = None) -> Any:
    return commons.client.post("/api/v1/data/sandbox/queries", json={"sql": sql}, headers=who or commons.member)


def _grant(commons: Commons, name: str) -> int:
    req = commons.client.post(f"/api/v1/data/datasets/{name}/requests", json=PURPOSE, headers=commons.member).json()
    r = commons.client.post(f"/api/v1/data/requests/{req['id']}/decision", json={"approve": True},
                            headers=commons.steward)
    return int(r.json()["grant"]["id"])


@pytest.fixture
def clinic(commons: Commons) -> Commons:
    commons.create("clinic", classification="sensitive", entity_column="person_id",
                   dp_keys={"region": ["North", "South"]}, dp_bounds={"cost": [0, 200], "age": [0, 120]})
    assert commons.publish("clinic").status_code == 201
    return commons


def test_sensitive_data_answers_with_differential_privacy_from_a_budget(clinic: Commons) -> None:
    grant = _grant(clinic, "clinic")
    sql = "SELECT region, count(*) AS visits, sum(cost) AS spend FROM clinic GROUP BY region"
    r = clinic.client.post("/api/v1/data/sandbox/queries", json={"sql": sql, "epsilon": 0.5}, headers=clinic.member)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "private" and body["columns"] == ["region", "visits", "spend"]
    assert [row[0] for row in body["rows"]] == ["North", "South"]  # the declared keys, in order
    assert all(isinstance(row[1], int) and row[1] >= 0 for row in body["rows"])
    privacy = body["privacy"]
    assert privacy["spent"] == 0.5 and not privacy["cached"]
    assert privacy["budget_before"]["epsilon_remaining"] == 1.0 and privacy["budget_after"]["epsilon_remaining"] == 0.5
    assert privacy["accuracy"]["visits"] > 0 and privacy["accuracy"]["spend"] > privacy["accuracy"]["visits"]
    assert body["datasets"] == [{"name": "clinic", "version": 1, "grant": grant}]
    # Unknown group keys would say who is in the data: refused, naming what to declare.
    small = _query(clinic, "SELECT age, count(*) AS n FROM clinic GROUP BY age")
    assert small.status_code == 403 and "age: its values are not declared public" in small.text
    history = clinic.client.get("/api/v1/data/sandbox/queries", headers=clinic.member).json()
    assert [h["outcome"] for h in history] == ["refused", "ok"] and history[1]["epsilon"] == 0.5
    with clinic.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "data.sandbox.query")).all()
        detail = json.loads(events[0].detail)
    assert detail["sql"] == sql and detail["datasets"][0]["version"] == 1 and detail["epsilon"] == 0.5
    assert detail["rows_out"] == 2 and len(detail["parse_hash"]) == 64 and len(detail["sql_sha256"]) == 64


def test_row_level_and_file_reads_are_refused_recorded_and_leak_nothing(clinic: Commons) -> None:
    _grant(clinic, "clinic")
    r = _query(clinic, "SELECT * FROM clinic")
    assert r.status_code == 403 and "P0001" not in r.text
    r = _query(clinic, "SELECT * FROM read_csv('/etc/passwd')")
    assert r.status_code == 403 and "root:" not in r.text
    history = clinic.client.get("/api/v1/data/sandbox/queries", headers=clinic.member).json()
    assert [h["outcome"] for h in history] == ["refused", "refused"]
    with clinic.db.session() as s:
        outcomes = s.scalars(select(AuditEvent.outcome).where(AuditEvent.action == "data.sandbox.query")).all()
    assert outcomes == ["refused", "refused"]


def test_no_expired_or_revoked_grant_opens_the_sandbox(clinic: Commons) -> None:
    sql = "SELECT region, count(*) AS n FROM clinic GROUP BY region"
    r = _query(clinic, sql)
    assert r.status_code == 403 and "no live grant on clinic" in r.json()["error"]["message"]
    grant = _grant(clinic, "clinic")
    assert _query(clinic, sql).status_code == 200
    with clinic.db.session() as s:
        s.execute(update(AccessGrant).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    assert _query(clinic, sql).status_code == 403
    with clinic.db.session() as s:
        s.execute(update(AccessGrant).values(expires_at=utcnow() + timedelta(days=1)))
        s.commit()
    assert _query(clinic, sql).status_code == 200
    clinic.client.post(f"/api/v1/data/grants/{grant}/revoke", json={"reason": "ended"}, headers=clinic.steward)
    assert _query(clinic, sql).status_code == 403


def test_restricted_and_open_data_take_full_sql_and_stewards_see_the_history(clinic: Commons) -> None:
    clinic.create("costs", classification="restricted")
    assert clinic.publish("costs").status_code == 201
    clinic.create("regions_open")
    assert clinic.publish("regions_open", "region,code\nNorth,N\nSouth,S\n").status_code == 201
    assert _query(clinic, "SELECT * FROM regions_open ORDER BY code").json()["rows"] == [["North", "N"], ["South", "S"]]
    assert _query(clinic, "SELECT count(*) FROM costs").status_code == 403
    _grant(clinic, "costs")
    r = _query(clinic, "SELECT r.code, max(c.cost) OVER (PARTITION BY r.code) AS top FROM costs c "
                       "JOIN regions_open r USING (region) ORDER BY c.person_id LIMIT 2")
    assert r.status_code == 200 and r.json()["mode"] == "full" and len(r.json()["rows"]) == 2
    seen = clinic.client.get("/api/v1/data/datasets/costs/queries", headers=clinic.steward).json()
    assert [q["outcome"] for q in seen] == ["ok", "refused"]
    assert clinic.client.get("/api/v1/data/datasets/costs/queries", headers=clinic.member).status_code == 403


def test_sandbox_query_from_the_cli(clinic: Commons, capsys: pytest.CaptureFixture[str]) -> None:
    _grant(clinic, "clinic")
    home = ["--home", str(clinic.home)]
    capsys.readouterr()
    sql = "SELECT region, count(*) AS n FROM clinic GROUP BY region"
    assert run([*home, "data", "query", sql, "--as", "analyst@test.example", "--json"]) == 0
    assert '"mode": "private"' in capsys.readouterr().out
    assert run([*home, "data", "query", "SELECT * FROM clinic", "--as", "analyst@test.example"]) == 1
    assert run([*home, "data", "query", sql, "--as", "abroad@test.example"]) == 1  # no grant
