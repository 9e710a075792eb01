"""Usage the providers report, idle allocations reclaimed, and invoices split into subsidy and applicant share."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from sovstack.compute import allocations as allocation_service
from sovstack.compute.tables import Allocation
from tests.compute.conftest import START, Exchange
from tests.conftest import make_key


@pytest.fixture
def accepted(exchange: Exchange) -> dict[str, object]:
    """One request allocated on the domestic provider and accepted by its staff."""
    exchange.offer("domestic", gpus=16, price=100)
    exchange.programme()
    exchange.open_round()
    rid = exchange.apply("usage job", gpu_hours=8 * 168, latest_period=0)["id"]  # starts on START
    exchange.review(rid, 8)
    exchange.allocate()
    [a] = exchange.allocations()
    r = exchange.post("/usage", {"allocation_id": a["id"], "gpu_hours": 1, "day": str(START), "reference": "early"},
                      exchange.staff)
    assert r.status_code == 409 and "accepted" in r.text  # proposed, not yet held
    assert exchange.post(f"/allocations/{a['id']}/decision", {"decision": "accept"}, exchange.staff).status_code == 200
    return a


def test_usage_is_recorded_once_and_never_beyond_the_allocation(exchange: Exchange,
                                                                accepted: dict[str, object]) -> None:
    aid = accepted["id"]
    body = {"allocation_id": aid, "gpu_hours": 500, "day": str(START + timedelta(days=1)), "reference": "r-1"}
    first = exchange.post("/usage", body, exchange.staff)
    assert first.status_code == 201 and first.json()["allocation_used"] == 500
    assert exchange.post("/usage", body, exchange.staff).json()["allocation_used"] == 500  # re-sent: counted once
    changed = exchange.post("/usage", {**body, "gpu_hours": 7}, exchange.staff)
    assert changed.status_code == 409 and "reference" in changed.text
    beyond = exchange.post("/usage", {**body, "reference": "r-2", "gpu_hours": 8 * 168}, exchange.staff)
    assert beyond.status_code == 422 and "gpu_hours" in beyond.text
    assert exchange.post("/usage", {**body, "reference": "r-3"}, exchange.stranger).status_code == 403
    missing = exchange.post("/usage", {**body, "allocation_id": 999, "reference": "r-4"}, exchange.staff)
    assert missing.status_code == 404 or missing.status_code == 422
    [a] = exchange.allocations()
    assert a["used_gpu_hours"] == 500


def test_a_provider_key_needs_the_report_scope(exchange: Exchange, accepted: dict[str, object]) -> None:
    staff_id = exchange.client.get("/api/v1/me", headers=exchange.staff).json()["user"]["id"]
    read_only = {"Authorization": f"Bearer {make_key(exchange.db, staff_id, ['read', 'write'])}"}
    reporter = {"Authorization": f"Bearer {make_key(exchange.db, staff_id, ['compute.report'])}"}
    body = {"allocation_id": accepted["id"], "gpu_hours": 10, "day": str(START), "reference": "k-1"}
    assert exchange.post("/usage", body, read_only).status_code == 403
    assert exchange.post("/usage", body, reporter).status_code == 201


def test_idle_allocations_are_flagged_and_reclaimed(exchange: Exchange, accepted: dict[str, object]) -> None:
    with exchange.db.session() as s:
        a = s.get(Allocation, accepted["id"])
        assert a is not None
        start = allocation_service.start_date(a)
        assert not allocation_service.is_idle(a, start + timedelta(days=13))
        assert allocation_service.is_idle(a, start + timedelta(days=14))
    assert exchange.allocations()[0]["idle"] is True  # START was weeks ago
    r = exchange.post(f"/allocations/{accepted['id']}/reclaim", {})
    assert r.status_code == 200 and r.json()["status"] == "reclaimed"
    assert exchange.get("/programmes/ccp/dashboard").json()["budget"]["committed"] == 0
    assert exchange.requests()[accepted["request_id"]]["explanation"]["binding"] == ["reclaimed"]


def test_used_allocations_are_never_idle(exchange: Exchange, accepted: dict[str, object]) -> None:
    exchange.post("/usage", {"allocation_id": accepted["id"], "gpu_hours": 1, "day": str(START), "reference": "u"},
                  exchange.staff)
    r = exchange.post(f"/allocations/{accepted['id']}/reclaim", {})
    assert r.status_code == 409 and "not idle" in r.text
    assert exchange.post(f"/allocations/{accepted['id']}/reclaim", {}, exchange.staff).status_code == 403


def test_invoices_split_cost_into_subsidy_and_applicant_share(exchange: Exchange,
                                                             accepted: dict[str, object]) -> None:
    exchange.post("/usage", {"allocation_id": accepted["id"], "gpu_hours": 250, "day": str(START),
                             "reference": "inv"}, exchange.staff)
    lines = exchange.get("/programmes/ccp/invoices", provider="domestic").json()
    assert len(lines) == 1 and lines[0]["cost"] == 25_000 and lines[0]["subsidy"] == 10_000
    assert lines[0]["applicant_share"] == 15_000
    text = exchange.get("/programmes/ccp/invoices", provider="domestic", format="csv").text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "allocation" and rows[-1][0] == "total" and rows[-1][7] == "25000.0"
    page = exchange.get("/programmes/ccp/invoices", applicant="Test University", format="html")
    assert page.status_code == 200 and "25,000.00" in page.text and "http" not in page.text
    assert exchange.get("/programmes/ccp/invoices", provider="domestic", who=exchange.stranger).status_code == 403
    assert exchange.get("/programmes/ccp/invoices", applicant="Test University",
                        who=exchange.applicant).status_code == 200
    both = exchange.get("/programmes/ccp/invoices", provider="domestic", applicant="Test University")
    assert both.status_code == 422


def test_reports_racing_each_other_never_exceed_the_allocation(exchange: Exchange,
                                                               accepted: dict[str, object]) -> None:
    aid, total = accepted["id"], 8 * 168  # 1,344 GPU-hours allocated
    bodies = [{"allocation_id": aid, "gpu_hours": 400, "day": str(START), "reference": f"race-{i}"} for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda b: exchange.post("/usage", b, exchange.staff).status_code, bodies))
    assert codes.count(201) == 3 and all(c in (201, 409, 422) for c in codes)  # 3 x 400 fit, a 4th would not
    [a] = exchange.allocations()
    assert a["used_gpu_hours"] == 1_200 <= total
