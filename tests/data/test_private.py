"""The attack suite: a member with a sandbox grant on sensitive data tries to learn one person's values.

The dataset plants individuals an attacker would aim at: person 42, the only 97-year-old in North, whose
income (2,000,000) dwarfs everyone else's. Each attack either is refused or gets a differentially private
answer that does not give the planted value within 1%; repeating a question costs nothing and gives the
same answer, and no new key, second grant or failure resets or escapes the budget.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from sovstack.core.tables import AuditEvent
from tests.data.conftest import Commons

PURPOSE = {"purpose": "Income by region (synthetic attack test)", "days": 30}
PLANTED_AGE, PLANTED_INCOME = 97, 2_000_000.0
REGIONS = ["North", "South", "East", "West"]


def _people(n: int) -> str:
    lines = ["person_id,region,age,income"]
    for i in range(n):
        age, income = (PLANTED_AGE, PLANTED_INCOME) if i == 42 else (20 + i % 60, 20_000.0 + (i * 37) % 50_000)
        lines.append(f"{i},{REGIONS[i % 4]},{age},{income}")
    return "\n".join(lines) + "\n"


def _grant(commons: Commons) -> int:
    req = commons.client.post("/api/v1/data/datasets/patients/requests", json=PURPOSE, headers=commons.member).json()
    r = commons.client.post(f"/api/v1/data/requests/{req['id']}/decision", json={"approve": True},
                            headers=commons.steward)
    return int(r.json()["grant"]["id"])


@pytest.fixture
def patients(commons: Commons) -> Commons:
    commons.create("patients", classification="sensitive", entity_column="person_id", dp_epsilon_cap=1.0,
                   dp_keys={"region": REGIONS}, dp_bounds={"age": [0, 110], "income": [0, 500_000]})
    assert commons.publish("patients", _people(400)).status_code == 201
    _grant(commons)
    return commons


def _ask(commons: Commons, sql: str, epsilon: float = 0.1, who: dict[str, str] | None = None) -> Any:
    return commons.client.post("/api/v1/data/sandbox/queries", json={"sql": sql, "epsilon": epsilon},
                               headers=who or commons.member)


def _budget(commons: Commons, who: dict[str, str] | None = None) -> dict[str, float]:
    return dict(commons.client.get("/api/v1/data/datasets/patients/budget", headers=who or commons.member).json())


def _far(answer: float | None, truth: float) -> bool:
    return answer is None or abs(answer - truth) > 0.01 * abs(truth)


def test_one_query_isolation_with_an_offset_is_refused(patients: Commons) -> None:
    r = _ask(patients, "SELECT sum(CASE WHEN person_id = 42 THEN income ELSE 0 END + 1) AS a, sum(1) AS b "
                       "FROM patients")
    assert r.status_code == 403 and "SUM and AVG take one column" in r.text
    assert "2000000" not in r.text and _budget(patients)["epsilon_spent"] == 0


def test_isolating_one_person_with_where_gets_noise_not_their_values(patients: Commons) -> None:
    r = _ask(patients, "SELECT sum(age) AS age, sum(income) AS income FROM patients WHERE person_id = 42")
    assert r.status_code == 200, r.text
    age, income = r.json()["rows"][0][0], r.json()["rows"][0][1]
    assert _far(age, PLANTED_AGE) and _far(income, PLANTED_INCOME)
    linked = _ask(patients, "SELECT sum(income) AS income FROM patients WHERE region = 'North' AND age = 97")
    assert linked.status_code == 200 and _far(linked.json()["rows"][0][0], PLANTED_INCOME)


def test_differencing_two_totals_does_not_give_the_difference(patients: Commons) -> None:
    everyone = _ask(patients, "SELECT sum(income) AS s FROM patients", epsilon=0.2).json()["rows"][0][0]
    but_one = _ask(patients, "SELECT sum(income) AS s FROM patients WHERE person_id <> 42",
                   epsilon=0.2).json()["rows"][0][0]
    assert _far(everyone - but_one, PLANTED_INCOME)
    tracker = _ask(patients, "SELECT count(*) AS n, sum(age) AS a FROM patients WHERE age >= 97 OR region = 'South'",
                   epsilon=0.2).json()["rows"][0]
    rest = _ask(patients, "SELECT count(*) AS n, sum(age) AS a FROM patients WHERE region = 'South'",
                epsilon=0.2).json()["rows"][0]
    assert _far(tracker[1] - rest[1], PLANTED_AGE)
    assert _budget(patients)["epsilon_spent"] == pytest.approx(0.8)


def test_bulk_dumps_and_unknown_groups_are_refused(patients: Commons) -> None:
    dump = _ask(patients, "SELECT person_id, sum(income) AS s FROM patients GROUP BY person_id")
    assert dump.status_code == 403 and "entity column" in dump.text
    ages = _ask(patients, "SELECT age, count(*) AS n FROM patients GROUP BY age")
    assert ages.status_code == 403 and "not declared public" in ages.text
    rows = _ask(patients, "SELECT * FROM patients")
    assert rows.status_code == 403 and "2000000" not in rows.text
    assert _budget(patients)["epsilon_spent"] == 0


def test_averaging_a_repeated_question_gets_the_same_answer_for_free(patients: Commons) -> None:
    sql = "SELECT region, count(*) AS n, avg(income) AS mean FROM patients GROUP BY region"
    answers = [_ask(patients, sql).json() for _ in range(4)]
    assert all(a["rows"] == answers[0]["rows"] for a in answers)
    assert [a["privacy"]["cached"] for a in answers] == [False, True, True, True]
    assert _budget(patients)["epsilon_spent"] == pytest.approx(0.1)
    assert [row[0] for row in answers[0]["rows"]] == sorted(REGIONS)


def test_budget_arithmetic_is_exact_and_an_exhausted_budget_refuses_with_an_audited_reason(patients: Commons) -> None:
    for i, epsilon in enumerate((0.1, 0.2, 0.3)):
        assert _ask(patients, f"SELECT count(*) AS n FROM patients WHERE age > {i}", epsilon).status_code == 200
    assert _budget(patients) == {"dataset": "patients", "grant": 1, "epsilon_cap": 1.0, "epsilon_limit": 1.0,
                                 "epsilon_spent": 0.6, "epsilon_remaining": 0.4, "delta_cap": 0.0,
                                 "delta_spent": 0.0, "delta_remaining": 0.0}
    assert _ask(patients, "SELECT count(*) AS n FROM patients WHERE age > 50", 0.4).status_code == 200
    refused = _ask(patients, "SELECT count(*) AS n FROM patients WHERE age > 60", 0.0001)
    assert refused.status_code == 403
    assert "privacy budget on patients cannot pay" in refused.json()["error"]["message"]
    assert _budget(patients)["epsilon_remaining"] == 0
    with patients.db.session() as s:
        last = s.scalars(select(AuditEvent).where(AuditEvent.action == "data.sandbox.query")
                         .order_by(AuditEvent.seq.desc())).first()
    assert last is not None and last.outcome == "refused" and "age > 60" in json.loads(last.detail)["sql"]


def test_a_fresh_key_or_a_second_grant_does_not_reset_the_budget(patients: Commons) -> None:
    assert _ask(patients, "SELECT count(*) AS n FROM patients", 0.9).status_code == 200
    fresh = patients.client.post("/api/v1/keys", json={"name": "second", "scopes": ["read", "write"]},
                                 headers=patients.member)
    assert fresh.status_code == 201, fresh.text
    second_key = {"Authorization": f"Bearer {fresh.json()['key']}"}
    assert _budget(patients, second_key)["epsilon_remaining"] == pytest.approx(0.1)
    _grant(patients)
    r = _ask(patients, "SELECT count(*) AS n FROM patients WHERE age > 30", 0.5, who=second_key)
    assert r.status_code == 403 and "cannot pay" in r.text


def test_a_failing_query_is_charged_and_quotes_no_value(patients: Commons) -> None:
    r = _ask(patients, "SELECT count(*) AS n FROM patients WHERE CAST(region AS INTEGER) = 1")
    assert r.status_code == 403 and "not supported in WHERE" in r.text and _budget(patients)["epsilon_spent"] == 0
    r = _ask(patients, "SELECT count(*) AS n FROM patients WHERE region > 5")
    assert r.status_code in (403, 422) and "North" not in r.text and "97" not in r.text
    assert _budget(patients)["epsilon_spent"] == pytest.approx(0.1)  # asked and answered with an error: paid


def test_stewards_declare_only_columns_that_exist_and_bounds_that_hold(patients: Commons) -> None:
    body = patients.client.get("/api/v1/data/datasets/patients", headers=patients.steward).json()
    fields = {k: body[k] for k in ("title", "licence", "classification", "storage_jurisdiction", "entity_column",
                                   "dp_bounds", "dp_keys")}
    r = patients.client.put("/api/v1/data/datasets/patients", json={**fields, "entity_column": "nobody"},
                            headers=patients.steward)
    assert r.status_code == 422 and "'nobody' is not a column" in r.text, r.text
    r = patients.client.put("/api/v1/data/datasets/patients", json={**fields, "dp_bounds": {"income": [5, 1]}},
                            headers=patients.steward)
    assert r.status_code == 422 and "dp_bounds.income" in r.text
    two_rows = "person_id,region,age,income\n1,North,30,10.5\n1,North,31,12.5\n"
    r = patients.publish("patients", two_rows)
    assert r.status_code == 422 and "dp_max_rows_per_entity is 1" in r.text


def test_a_count_over_ten_thousand_people_is_within_its_stated_error(commons: Commons) -> None:
    commons.create("patients", classification="sensitive", entity_column="person_id",
                   dp_keys={"region": REGIONS}, dp_bounds={"age": [0, 110]})
    assert commons.publish("patients", _people(10_000)).status_code == 201
    _grant(commons)
    body = _ask(commons, "SELECT count(*) AS n FROM patients").json()  # the default ε 0.1
    n, error = body["rows"][0][0], body["privacy"]["accuracy"]["n"]
    assert error < 35  # Laplace with scale 10: 95% within ±30
    assert abs(n - 10_000) <= 3 * error


def test_the_stewards_view_cannot_be_flooded_away(patients: Commons) -> None:
    assert _ask(patients, "SELECT count(*) AS n FROM patients").status_code == 200
    patients.create("other_open")
    assert patients.publish("other_open", "a,b\n1,2\n").status_code == 201
    for _ in range(25):
        _ask(patients, "SELECT nope FROM other_open")
    seen = patients.client.get("/api/v1/data/datasets/patients/queries", params={"limit": 5},
                               headers=patients.steward).json()
    assert [q["sql"] for q in seen] == ["SELECT count(*) AS n FROM patients"] and seen[0]["epsilon"] == 0.1
    assert len(seen[0]["sql_sha256"]) == 64


def test_a_member_without_a_grant_is_refused_before_any_spend(patients: Commons) -> None:
    foreign = _ask(patients, "SELECT count(*) AS n FROM patients", who=patients.foreigner)
    assert foreign.status_code == 403 and "no live grant" in foreign.text


def test_concurrent_spends_never_pass_the_cap(patients: Commons) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from sovstack.core.errors import Refused
    from sovstack.data import queries, service

    user_id = int(patients.client.get("/api/v1/me", headers=patients.member).json()["user"]["id"])

    def spend(_: int) -> bool:
        with patients.db.session() as s:
            dataset = service.get_dataset(s, "patients")
            try:
                queries._charge(s, user_id, dataset, 0.3, 0.0, queries.budget(s, user_id, dataset))
            except Refused:
                return False
            return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        paid = list(pool.map(spend, range(8)))
    assert paid.count(True) == 3  # 3 x 0.3 <= 1.0 < 4 x 0.3
    assert _budget(patients)["epsilon_spent"] == pytest.approx(0.9)



def test_people_with_several_rows_get_noise_sized_to_all_of_them(commons: Commons) -> None:
    commons.create("patients", classification="sensitive", entity_column="person_id", dp_max_rows_per_entity=3,
                   dp_keys={"region": REGIONS}, dp_bounds={"age": [0, 110]})
    visits = "person_id,region,age\n" + "".join(f"{i},{REGIONS[i % 4]},{30 + i % 40}\n"
                                                  for i in range(300) for _ in range(1 + i % 3))
    assert commons.publish("patients", visits).status_code == 201
    _grant(commons)
    one_row = _ask(commons, "SELECT region, count(*) AS n FROM patients GROUP BY region", 0.5)
    assert one_row.status_code == 200, one_row.text
    error = one_row.json()["privacy"]["accuracy"]["n"]
    assert 3 * 0.9 * 5.99 < error < 3 * 1.1 * 5.99 + 2  # three times the one-row-per-person bound (±6 at ε 0.5)


def test_error_and_timing_oracles_have_nothing_to_branch_on(patients: Commons) -> None:
    """A DP answer's WHERE takes only comparisons and + - *, evaluated column-wise over every row: no
    branch, function, cast or division whose cost or failure could depend on one person's value."""
    probes = ["SELECT count(*) AS n FROM patients WHERE person_id = 42 AND length(repeat('x', income)) > 0",
              "SELECT count(*) AS n FROM patients WHERE CASE WHEN person_id = 42 THEN income / 0 > 1 ELSE false END",
              "SELECT count(*) AS n FROM patients WHERE CAST(region AS INTEGER) = 1 AND person_id = 42",
              "SELECT count(*) AS n FROM patients WHERE 1 / (income - 2000000) > 0"]
    for sql in probes:
        r = _ask(patients, sql)
        assert r.status_code == 403, (sql, r.text)
    assert _budget(patients)["epsilon_spent"] == 0


def test_medians_and_quantiles_are_answered_privately_from_candidates_over_the_bounds(patients: Commons) -> None:
    r = _ask(patients, "SELECT median(income) AS m, quantile_cont(age, 0.9) AS q90 FROM patients", epsilon=0.5)
    assert r.status_code == 200, r.text
    median, q90 = r.json()["rows"][0]
    assert median % 5000 == 0 and 0 <= median <= 500_000  # one of 101 candidates over the declared bounds
    assert q90 % 1.1 == pytest.approx(0, abs=1e-6) or abs(q90 % 1.1 - 1.1) < 1e-6
    assert median != PLANTED_INCOME and r.json()["privacy"]["accuracy"] == {"m": None, "q90": None}
    assert _budget(patients)["epsilon_spent"] == pytest.approx(0.5)
    unbounded = _ask(patients, "SELECT median(person_id) AS m FROM patients")
    assert unbounded.status_code == 403 and "declared bounds" in unbounded.text
    exact = patients.client.post("/api/v1/data/airlock", json={"sql": "SELECT median(income) AS m FROM patients",
                                                               "purpose": "An exact median (synthetic test)"},
                                 headers=patients.member)
    assert exact.status_code == 403 and "some person's own value" in exact.text


def _cities(n: int) -> str:
    lines = ["person_id,city,income"]
    for i in range(n):
        lines.append(f"{i},{'Tinytown' if i < 3 else f'City {i % 7}'},{20_000 + i % 1000}")
    return "\n".join(lines) + "\n"


def test_undeclared_keys_are_released_only_above_a_threshold_and_spend_delta(commons: Commons) -> None:
    commons.create("residents", classification="sensitive", entity_column="person_id", dp_epsilon_cap=2.0,
                   dp_delta_cap=2e-7, dp_bounds={"income": [0, 100_000]})
    assert commons.publish("residents", _cities(2003)).status_code == 201
    req = commons.client.post("/api/v1/data/datasets/residents/requests", json=PURPOSE, headers=commons.member)
    commons.client.post(f"/api/v1/data/requests/{req.json()['id']}/decision", json={"approve": True},
                        headers=commons.steward)
    sql = "SELECT city, count(*) AS n, sum(income) AS total FROM residents GROUP BY city"
    r = commons.client.post("/api/v1/data/sandbox/queries", json={"sql": sql, "epsilon": 0.5, "delta": 1e-7},
                            headers=commons.member)
    assert r.status_code == 200, r.text
    cities = [row[0] for row in r.json()["rows"]]
    assert "Tinytown" not in cities and cities == sorted(f"City {i}" for i in range(7))
    privacy = r.json()["privacy"]
    assert privacy["delta"] == 1e-7 and privacy["threshold"] > 3
    assert privacy["budget_after"]["delta_spent"] == pytest.approx(1e-7)
    counted = commons.client.post("/api/v1/data/sandbox/queries", json={
        "sql": "SELECT city, sum(income) AS total FROM residents WHERE income > 20500 GROUP BY city",
        "epsilon": 0.5, "delta": 1e-7}, headers=commons.member)
    assert counted.status_code == 200 and "Tinytown" not in counted.text  # a hidden count carries the threshold
    spent = commons.client.post("/api/v1/data/sandbox/queries", json={
        "sql": "SELECT city, count(*) AS n FROM residents WHERE income < 20900 GROUP BY city", "epsilon": 0.5,
        "delta": 1e-7}, headers=commons.member)
    assert spent.status_code == 403 and "δ 1e-07 asked, 0 of 2e-07 left" in spent.json()["error"]["message"]
    body = commons.client.get("/api/v1/data/datasets/residents", headers=commons.steward).json()
    fields = {k: body[k] for k in ("title", "licence", "classification", "storage_jurisdiction", "entity_column",
                                   "dp_epsilon_cap", "dp_bounds")}
    r = commons.client.put("/api/v1/data/datasets/residents", json={**fields, "dp_delta_cap": 0},
                           headers=commons.steward)
    assert r.status_code == 200, r.text
    closed = commons.client.post("/api/v1/data/sandbox/queries", json={"sql": sql, "epsilon": 0.1},
                                 headers=commons.member)
    assert closed.status_code == 403 and "δ cap is 0" in closed.text
