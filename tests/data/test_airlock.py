"""The airlock, attacked: exact results from sensitive data leave only after a second person's output check.

Same planted population as the DP attack suite (person 42, the only 97-year-old, income 2,000,000, in
East). Each attack on exact figures is held for review, and the check puts in front of the steward what
gives it away: a cell one person makes, a group below k and the cell that would give it back, a pair of
requests whose people differ by one, a condition or constant inside an aggregate.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from sovstack.cli import run
from sovstack.core.tables import AuditEvent
from tests.conftest import make_key, make_user
from tests.console.test_pages import csrf_of
from tests.data.conftest import Commons
from tests.data.test_pages import _login
from tests.data.test_private import PLANTED_INCOME, REGIONS, _people

PURPOSE = "Exact counts for the annual report (synthetic test)"


@pytest.fixture
def patients(commons: Commons) -> Commons:
    commons.create("patients", classification="sensitive", entity_column="person_id",
                   dp_keys={"region": REGIONS}, dp_bounds={"age": [0, 110], "income": [0, 500_000]})
    assert commons.publish("patients", _people(400)).status_code == 201
    req = commons.client.post("/api/v1/data/datasets/patients/requests",
                              json={"purpose": "Exact figures (synthetic test)", "days": 30}, headers=commons.member)
    assert commons.client.post(f"/api/v1/data/requests/{req.json()['id']}/decision", json={"approve": True},
                               headers=commons.steward).status_code == 200
    return commons


def _submit(commons: Commons, sql: str, who: dict[str, str] | None = None) -> Any:
    """Submit, then wait for the background run's output check (read as an admin, who reviews everything)."""
    r = commons.client.post("/api/v1/data/airlock", json={"sql": sql, "purpose": PURPOSE},
                            headers=who or commons.member)
    if r.status_code == 201:
        wait_for_check(commons, r.json()["id"])
    return r


def wait_for_check(commons: Commons, request_id: int, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        seen = commons.client.get(f"/api/v1/data/airlock/{request_id}", headers=commons.admin).json()
        if "running" not in seen["checks"] or time.monotonic() > deadline:
            return dict(seen)
        time.sleep(0.05)


def _held(commons: Commons, sql: str) -> dict[str, Any]:
    r = _submit(commons, sql)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "held" and r.json()["rows"] is None
    review = commons.client.get(f"/api/v1/data/airlock/{r.json()['id']}", headers=commons.steward)
    assert review.status_code == 200, review.text
    return dict(review.json())


def _decide(commons: Commons, request_id: int, release: bool = True, reason: str = "",
            who: dict[str, str] | None = None) -> Any:
    return commons.client.post(f"/api/v1/data/airlock/{request_id}/decision",
                               json={"release": release, "reason": reason}, headers=who or commons.steward)


def test_an_exact_result_is_held_until_a_steward_releases_it(patients: Commons) -> None:
    held = _held(patients, "SELECT region, count(*) AS n, sum(income) AS total FROM patients GROUP BY region")
    mine = patients.client.get(f"/api/v1/data/airlock/{held['id']}", headers=patients.member).json()
    assert mine["rows"] is None and "exact_rows" not in mine and "checks" not in mine
    assert [row[1] for row in held["exact_rows"]] == [100, 100, 100, 100]  # exact: no rounding, no noise
    east = next(row for row in held["exact_rows"] if row[0] == "East")
    assert east[2] > PLANTED_INCOME
    assert held["checks"]["summary"] == {"cells": 12, "primary": 0, "secondary": 0, "groups_withheld": 0,
                                         "overlaps": 0, "warnings": 0}
    released = _decide(patients, held["id"], reason="counts for the report")
    assert released.status_code == 200 and released.json()["status"] == "released"
    mine = patients.client.get(f"/api/v1/data/airlock/{held['id']}", headers=patients.member).json()
    assert mine["rows"] == held["exact_rows"] and mine["reviewed_by"].startswith("steward@test.example")
    with patients.db.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).where(AuditEvent.action.like("data.airlock.%")))]
    assert actions == ["data.airlock.submit", "data.airlock.check", "data.airlock.decide"]


def test_the_offset_isolation_is_held_with_its_warnings_and_one_persons_cell_is_suppressed(patients: Commons) -> None:
    offset = _held(patients, "SELECT sum(CASE WHEN person_id = 42 THEN income ELSE 0 END + 1) AS a, "
                             "count(*) AS b FROM patients")
    warnings = " ".join(offset["checks"]["warnings"])
    assert "condition inside the aggregate" in warnings and "adds a constant" in warnings
    assert "entity column" in warnings
    plain = _held(patients, "SELECT sum(CASE WHEN person_id = 42 THEN income ELSE 0 END) AS a FROM patients")
    cell = plain["checks"]["cells"][0]
    assert cell["entities"] == 1 and cell["status"] == "primary" and cell["rule"] == "k"
    assert plain["released_rows"] == [[None]]
    zeros = _held(patients, "SELECT sum(CASE WHEN person_id = 42 THEN income ELSE 0 END) AS a, "
                            "sum(CASE WHEN person_id = 42 THEN 0 ELSE 0 END) AS z FROM patients")
    assert [c["entities"] for c in zeros["checks"]["cells"]] == [1, 0]  # zeros hide no one
    for request in (offset, plain):
        mine = patients.client.get(f"/api/v1/data/airlock/{request['id']}", headers=patients.member)
        assert str(int(PLANTED_INCOME)) not in mine.text and mine.json()["rows"] is None


def test_a_small_group_is_withheld_and_the_cell_that_would_give_it_back_is_suppressed(patients: Commons) -> None:
    sql = ("SELECT region, count(*) AS n FROM patients WHERE (region <> 'East' AND age >= 50) "
           "OR (region = 'East' AND age >= 78) GROUP BY region")
    held = _held(patients, sql)
    east = held["checks"]["groups"].index("region=East")
    assert held["checks"]["group_entities"][east] == 7
    summary = held["checks"]["summary"]
    assert summary["groups_withheld"] == 1 and summary["secondary"] == 1
    secondary = next(c for c in held["checks"]["cells"] if c["status"] == "secondary")
    assert secondary["rule"] == "complementary" and secondary["column"] == "n"
    assert len(held["released_rows"]) == 3 and "East" not in [row[0] for row in held["released_rows"]]
    assert sum(row[1] is None for row in held["released_rows"]) == 1  # total - the shown two != East's count


def test_two_dimensional_tables_are_suppressed_along_every_line(patients: Commons) -> None:
    held = _held(patients, "SELECT region, age >= 70 AS old, count(*) AS n FROM patients "
                           "WHERE region <> 'East' OR age < 70 OR age = 97 GROUP BY region, age >= 70")
    summary = held["checks"]["summary"]
    assert summary["groups_withheld"] == 1 and summary["secondary"] >= 2, summary  # East's one old person
    cells = {(held["checks"]["groups"][c["row"]], c["column"]): c["status"] for c in held["checks"]["cells"]}
    lines: dict[str, list[str]] = {}
    for (group, column), status in cells.items():
        if column == "n":
            region, old = group.split(", ")
            lines.setdefault(region, []).append(status)
            lines.setdefault(old, []).append(status)
    assert all(sum(status != "ok" for status in statuses) != 1 for statuses in lines.values()), lines


def test_differencing_against_an_earlier_release_or_a_pending_request_is_flagged(patients: Commons) -> None:
    first = _held(patients, "SELECT count(*) AS n, sum(income) AS s FROM patients WHERE region = 'East'")
    assert _decide(patients, first["id"]).status_code == 200
    second = _held(patients, "SELECT count(*) AS n, sum(income) AS s FROM patients "
                             "WHERE region = 'East' AND person_id <> 42")
    assert second["checks"]["overlaps"] == [{"release": first["id"], "group": "all rows", "their_group": "all rows",
                                             "entities": 99, "their_entities": 100, "apart": 1}]
    # sent together, before either is released: the later one is checked against the one still held
    third = _held(patients, "SELECT region, sum(income) AS s FROM patients WHERE age < 97 GROUP BY region")
    fourth = _held(patients, "SELECT region, sum(income) AS s FROM patients GROUP BY region")
    assert any(o["release"] == third["id"] and o["apart"] == 1 and o["group"] == "region=East"
               for o in fourth["checks"]["overlaps"])
    assert not any(o["release"] == third["id"] and o["group"] != "region=East" for o in fourth["checks"]["overlaps"])


def test_only_another_steward_of_the_publisher_decides(patients: Commons) -> None:
    held = _held(patients, "SELECT count(*) AS n FROM patients")
    assert _decide(patients, held["id"], who=patients.member).status_code == 403
    assert _decide(patients, held["id"], who=patients.foreigner).status_code == 403
    assert patients.client.get(f"/api/v1/data/airlock/{held['id']}", headers=patients.foreigner).status_code == 404
    refused = _decide(patients, held["id"], release=False)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "reason"
    assert _decide(patients, held["id"], release=False, reason="use the DP answer").status_code == 200
    mine = patients.client.get(f"/api/v1/data/airlock/{held['id']}", headers=patients.member).json()
    assert mine["status"] == "refused" and mine["reason"] == "use the DP answer" and mine["rows"] is None
    assert _decide(patients, held["id"]).status_code == 409


def test_a_steward_cannot_release_their_own_request(patients: Commons) -> None:
    req = patients.client.post("/api/v1/data/datasets/patients/requests",
                               json={"purpose": "Steward's own analysis (synthetic)", "days": 30,
                                     "organisation_id": patients.publisher}, headers=patients.steward)
    assert patients.client.post(f"/api/v1/data/requests/{req.json()['id']}/decision", json={"approve": True},
                                headers=patients.steward).status_code == 403  # nobody decides their own
    assert patients.client.post(f"/api/v1/data/requests/{req.json()['id']}/decision", json={"approve": True},
                                headers=patients.admin).status_code == 200
    own = _submit(patients, "SELECT count(*) AS n FROM patients", who=patients.steward)
    assert own.status_code == 201
    r = _decide(patients, own.json()["id"])
    assert r.status_code == 403 and "own" in r.json()["error"]["message"]
    review = patients.client.get("/api/v1/data/airlock", params={"view": "review"}, headers=patients.steward).json()
    assert own.json()["id"] not in [item["id"] for item in review]
    assert _decide(patients, own.json()["id"], who=patients.admin).status_code == 200


def test_the_airlock_takes_only_aggregates_of_sensitive_data_under_a_grant(patients: Commons) -> None:
    rows = _submit(patients, "SELECT * FROM patients")
    assert rows.status_code == 403 and str(int(PLANTED_INCOME)) not in rows.text
    patients.create("towns")
    assert patients.publish("towns").status_code == 201
    assert _submit(patients, "SELECT count(*) AS n FROM towns").status_code == 422
    stranger = make_user(patients.db, "stranger@test.example")
    key = {"Authorization": f"Bearer {make_key(patients.db, stranger['id'], ['read', 'write'])}"}
    assert _submit(patients, "SELECT count(*) AS n FROM patients", who=key).status_code == 403
    assert patients.client.get("/api/v1/data/airlock", headers=patients.member).json() == []
    with patients.db.session() as s:
        outcomes = [e.outcome for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "data.airlock.submit"))]
    assert outcomes.count("refused") >= 2


def test_listing_pages_and_filters(patients: Commons) -> None:
    ids = [_submit(patients, f"SELECT count(*) AS n FROM patients WHERE age > {age}").json()["id"]
           for age in (30, 40, 50)]
    review = patients.client.get("/api/v1/data/airlock", params={"view": "review", "status": "held", "limit": 2},
                                 headers=patients.steward).json()
    assert [item["id"] for item in review] == ids[:0:-1] and all("checks" in item for item in review)
    more = patients.client.get("/api/v1/data/airlock", params={"view": "review", "before": ids[1]},
                               headers=patients.steward).json()
    assert [item["id"] for item in more] == [ids[0]]
    mine = patients.client.get("/api/v1/data/airlock", headers=patients.member).json()
    assert all(item["rows"] is None and "exact_rows" not in item for item in mine)


def test_the_airlock_from_the_cli(patients: Commons, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(patients.home)]
    sql = "SELECT region, count(*) AS n FROM patients WHERE age >= 78 OR region <> 'East' GROUP BY region"
    assert run([*home, "data", "airlock", "submit", sql, "--purpose", PURPOSE, "--as", "analyst@test.example",
                "--json"]) == 0
    request_id = json.loads(capsys.readouterr().out)["id"]
    assert run([*home, "data", "airlock", "list"]) == 0
    assert "held" in capsys.readouterr().out
    assert run([*home, "data", "airlock", "show", str(request_id)]) == 0
    shown = capsys.readouterr().out
    assert "exact result (held)" in shown and "fewer than k=10: withheld whole" in shown and "complementary" in shown
    assert run([*home, "data", "airlock", "refuse", str(request_id), "--reason", ""]) == 2
    assert run([*home, "data", "airlock", "release", str(request_id)]) == 0
    assert run([*home, "data", "airlock", "release", str(request_id)]) == 2  # already released
    capsys.readouterr()
    assert run([*home, "data", "airlock", "list", "--as", "analyst@test.example", "--json"]) == 0
    mine = json.loads(capsys.readouterr().out)
    assert mine[0]["status"] == "released" and len(mine[0]["rows"]) == 3
    assert run([*home, "data", "airlock", "submit", "SELECT * FROM patients", "--purpose", PURPOSE,
                "--as", "analyst@test.example"]) == 1


def test_the_airlock_in_the_console(patients: Commons) -> None:
    client = patients.client
    _login(client, "analyst@test.example")
    sql = "SELECT region, count(*) AS n FROM patients WHERE age >= 78 OR region <> 'East' GROUP BY region"
    page = client.get("/data/airlock", params={"sql": sql})
    assert page.status_code == 200 and "Waiting for your review" not in page.text and "GROUP BY region" in page.text
    short = client.post("/data/airlock", data={"csrf_token": csrf_of(page.text), "sql": sql, "purpose": "short"})
    assert short.status_code == 422 and "purpose" in short.text and "GROUP BY region" in short.text  # kept
    r = client.post("/data/airlock", follow_redirects=False,
                    data={"csrf_token": csrf_of(page.text), "sql": sql, "purpose": PURPOSE})
    assert r.status_code == 303
    at = r.headers["location"].split("?")[0]
    wait_for_check(patients, int(at.rsplit("/", 1)[1]))
    mine = client.get(at)
    assert 'id="airlock-held"' in mine.text and 'id="airlock-check"' not in mine.text and ">100<" not in mine.text

    _login(client, "steward@test.example")
    listing = client.get("/data/airlock")
    assert 'id="airlock-review"' in listing.text and "analyst@test.example" in listing.text
    review = client.get(at)
    assert 'id="airlock-check"' in review.text and "k-group" in review.text and "complementary" in review.text
    assert ">100<" in review.text  # the exact figures, for the steward
    refused = client.post(f"{at}/decide",
                          data={"csrf_token": csrf_of(review.text), "decision": "refuse", "reason": ""})
    assert refused.status_code == 422 and "reason" in refused.text
    released = client.post(f"{at}/decide", follow_redirects=False,
                           data={"csrf_token": csrf_of(review.text), "decision": "release", "reason": "fine"})
    assert released.status_code == 303

    _login(client, "analyst@test.example")
    mine = client.get(at)
    released_table = mine.text.split('id="airlock-released"')[1]
    assert "suppressed" in released_table and "<td>East</td>" not in released_table
    assert "<td>North</td>" in released_table


def test_an_error_that_depends_on_one_persons_value_is_held_like_any_result(patients: Commons) -> None:
    probe = ("SELECT sum(CASE WHEN person_id = 42 AND income > {cut} THEN CAST(region AS INTEGER) ELSE 0 END) "
             "AS probe FROM patients")
    answers = [_submit(patients, probe.format(cut=cut)) for cut in (1_000_000, 3_000_000)]
    assert [a.status_code for a in answers] == [201, 201]  # the one that fails looks the same
    assert [a.json()["status"] for a in answers] == ["held", "held"]
    assert answers[0].json().keys() == answers[1].json().keys()
    failed = patients.client.get(f"/api/v1/data/airlock/{answers[0].json()['id']}", headers=patients.steward).json()
    assert "Conversion Error" in failed["checks"]["failed"] and failed["exact_rows"] == []
    assert _decide(patients, failed["id"]).status_code == 422  # nothing to release
    with patients.db.session() as s:
        checks = [e.outcome for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "data.airlock.check"))]
    assert sorted(checks) == ["failed", "ok"]
    assert _decide(patients, failed["id"], release=False, reason="probing a person's value").status_code == 200
    names = _submit(patients, "SELECT sum(no_such_column) AS s FROM patients")
    assert names.status_code == 422 and "no_such_column" in names.text  # a wrong name is the same for any data


def test_the_reply_comes_before_the_run_so_its_time_says_nothing_about_the_data(patients: Commons) -> None:
    slow = ("SELECT sum(CASE WHEN person_id = 42 AND income > 1000000 THEN length(repeat(region, 20000000)) "
            "ELSE 0 END) AS probe FROM patients")
    r = patients.client.post("/api/v1/data/airlock", json={"sql": slow, "purpose": PURPOSE}, headers=patients.member)
    assert r.status_code == 201 and r.json()["status"] == "held"
    seen = patients.client.get(f"/api/v1/data/airlock/{r.json()['id']}", headers=patients.admin).json()
    assert "running" in seen["checks"]  # the member already has their answer; the query has not finished
    early = _decide(patients, r.json()["id"], who=patients.admin)
    assert early.status_code == 409 and "still running" in early.text
    done = wait_for_check(patients, r.json()["id"])
    assert "running" not in done["checks"] and done["checks"]["cells"][0]["entities"] == 1
