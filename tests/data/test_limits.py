"""Query limits and per-grant budgets, as a careless or hostile member would meet them: a flood of cheap
refusals, a second key, concurrent requests, a steward's smaller budget on one grant."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from sovstack.core.tables import AuditEvent
from sovstack.data.tables import SandboxQuery
from tests.conftest import make_key
from tests.data.conftest import Commons
from tests.data.test_private import REGIONS, _people


def _ask(commons: Commons, sql: str, who: dict[str, str] | None = None, epsilon: float = 0.1) -> Any:
    return commons.client.post("/api/v1/data/sandbox/queries", json={"sql": sql, "epsilon": epsilon},
                               headers=who or commons.member)


def _user_id(commons: Commons, who: dict[str, str]) -> int:
    return int(commons.client.get("/api/v1/me", headers=who).json()["user"]["id"])


@pytest.fixture
def towns(commons: Commons) -> Commons:
    commons.create("towns")
    assert commons.publish("towns").status_code == 201
    return commons


def _sensitive(commons: Commons, **decision: Any) -> Any:
    commons.create("patients", classification="sensitive", entity_column="person_id", dp_epsilon_cap=1.0,
                   dp_keys={"region": REGIONS}, dp_bounds={"income": [0, 500_000]})
    assert commons.publish("patients", _people(200)).status_code == 201
    req = commons.client.post("/api/v1/data/datasets/patients/requests",
                              json={"purpose": "Limits under test (synthetic)", "days": 30}, headers=commons.member)
    return commons.client.post(f"/api/v1/data/requests/{req.json()['id']}/decision",
                               json={"approve": True, **decision}, headers=commons.steward)


def test_refused_queries_count_and_a_second_key_shares_the_per_minute_limit(towns: Commons) -> None:
    towns.db.settings.sandbox_queries_per_minute = 4
    assert [_ask(towns, "SELECT nope FROM towns").status_code for _ in range(2)] == [422, 422]
    assert _ask(towns, "COPY towns TO 'x.csv'").status_code == 403
    assert _ask(towns, "SELECT count(*) AS n FROM towns").status_code == 200
    second = {"Authorization": f"Bearer {make_key(towns.db, _user_id(towns, towns.member), ['read', 'write'])}"}
    limited = _ask(towns, "SELECT count(*) AS n FROM towns", who=second)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["field"] == "sql" and "a minute" in limited.json()["error"]["message"]
    assert _ask(towns, "SELECT count(*) AS n FROM towns", who=towns.steward).status_code == 200  # per person
    with towns.db.session() as s:
        last = s.scalars(select(SandboxQuery).order_by(SandboxQuery.id.desc())).all()[1]
        assert last.outcome == "refused" and "a minute" in last.message
        audited = s.scalars(select(AuditEvent).where(AuditEvent.action == "data.sandbox.query")
                            .order_by(AuditEvent.seq.desc())).all()[1]
        assert audited.outcome == "refused"


def test_concurrent_queries_never_pass_the_limit_together(towns: Commons) -> None:
    towns.db.settings.sandbox_queries_per_minute = 5
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda _: _ask(towns, "SELECT count(*) AS n FROM towns").status_code, range(12)))
    assert codes.count(200) == 5 and codes.count(429) == 7, codes


def test_a_grants_daily_cap_binds_every_key_and_leaves_other_datasets_alone(towns: Commons) -> None:
    decided = _sensitive(towns, daily_queries=3)
    assert decided.status_code == 200 and decided.json()["grant"]["daily_queries"] == 3
    answered = [_ask(towns, "SELECT count(*) AS n FROM patients").status_code for _ in range(3)]
    assert answered == [200, 200, 200]  # the 2nd and 3rd are repeats: free of budget, not of the cap
    second = {"Authorization": f"Bearer {make_key(towns.db, _user_id(towns, towns.member), ['read', 'write'])}"}
    capped = _ask(towns, "SELECT count(*) AS n FROM patients", who=second)
    assert capped.status_code == 429 and "daily cap of 3" in capped.json()["error"]["message"]
    airlock = towns.client.post("/api/v1/data/airlock", json={"sql": "SELECT count(*) AS n FROM patients",
                                                              "purpose": "Exact count (synthetic test)"},
                                headers=towns.member)
    assert airlock.status_code == 429
    assert _ask(towns, "SELECT count(*) AS n FROM towns").status_code == 200  # open data: no daily cap


def test_a_grants_privacy_budget_binds_within_the_datasets_cap(towns: Commons) -> None:
    too_much = _sensitive(towns, epsilon=1.5)
    assert too_much.status_code == 422 and too_much.json()["error"]["field"] == "epsilon"
    req = towns.client.get("/api/v1/data/requests/mine", headers=towns.member).json()[0]
    decided = towns.client.post(f"/api/v1/data/requests/{req['id']}/decision", json={"approve": True, "epsilon": 0.3},
                                headers=towns.steward)
    assert decided.status_code == 200 and decided.json()["grant"]["epsilon_budget"] == 0.3
    budget = towns.client.get("/api/v1/data/datasets/patients/budget", headers=towns.member).json()
    assert budget["epsilon_limit"] == 0.3 and budget["epsilon_cap"] == 1.0 and budget["epsilon_remaining"] == 0.3
    spent = [_ask(towns, f"SELECT count(*) AS n FROM patients WHERE region = '{r}'").status_code for r in REGIONS]
    assert spent == [200, 200, 200, 403]
    after = towns.client.get("/api/v1/data/datasets/patients/budget", headers=towns.member).json()
    assert after["epsilon_spent"] == pytest.approx(0.3) and after["epsilon_remaining"] == pytest.approx(0)
