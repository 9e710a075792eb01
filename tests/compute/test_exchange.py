"""The compute exchange through its HTTP API: providers and offers, programmes, requests and reviews,
allocation rounds with their proven gap and explanations, declines that re-solve, and bad input."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from tests.compute.conftest import Exchange


def _errors(r: Any) -> str:
    return str(r.json())


def test_providers_show_who_controls_them(exchange: Exchange) -> None:
    found = {p["name"]: p for p in exchange.get("/providers").json()}
    assert found["domestic"]["foreign_controlled"] is False
    assert found["hyper"]["foreign_controlled"] is True and found["hyper"]["parent_jurisdiction"] == "US"
    assert any("CLOUD Act" in law for law in found["hyper"]["extraterritorial_laws"])
    assert found["euro"]["foreign_controlled"] is True and found["hyper"]["corporate_group"] == "Hyper Inc"


@pytest.mark.parametrize(("change", "field"), [
    ({"gpu_count": 0}, "gpu_count"), ({"gpu_count": -4}, "gpu_count"), ({"price": 0}, "price"),
    ({"price": -1.5}, "price"), ({"available_until": "2026-01-01"}, "available_until"),
    ({"benchmark": ""}, "benchmark"), ({"gpu_type": "XPU9000"}, "chip_vendor"),
])
def test_bad_offers_are_refused_naming_the_field(exchange: Exchange, change: dict[str, Any], field: str) -> None:
    body = {"provider": "domestic", "gpu_type": "H100", "gpu_count": 8, "price": 100, "available_from": "2026-11-02",
            "available_until": "2026-12-27", "delivery": "delivered", "benchmark": "run", **change}
    r = exchange.post("/offers", body)
    assert r.status_code == 422 and field in _errors(r)
    assert exchange.get("/offers").json() == []


def test_provider_staff_offer_only_their_own_capacity(exchange: Exchange) -> None:
    exchange.offer("domestic")  # as the operator
    body = {"provider": "domestic", "gpu_type": "MI300X", "gpu_count": 8, "price": 90, "available_from": "2026-11-02",
            "available_until": "2026-12-27", "delivery": "committed"}
    mine = exchange.post("/offers", body, exchange.staff)
    assert mine.status_code == 201 and mine.json()["chip_vendor"] == "AMD"
    assert exchange.post("/offers", {**body, "provider": "hyper"}, exchange.staff).status_code == 403
    provider = {"name": "rogue", "party": "Euro Cloud", "datacentre_jurisdiction": "FR",
                "control_plane_jurisdiction": "FR"}
    assert exchange.post("/providers", provider, exchange.staff).status_code == 403


def _world(exchange: Exchange, **programme: Any) -> dict[str, int]:
    offers = {"domestic": exchange.offer("domestic", gpus=16, price=100),
              "hyper": exchange.offer("hyper", gpus=16, price=120),
              "euro": exchange.offer("euro", gpus=16, price=90)}
    exchange.programme(**programme)
    exchange.open_round()
    return offers


def _capacity_respected(exchange: Exchange, offers: dict[str, int]) -> None:
    used: dict[tuple[int, int], int] = defaultdict(int)
    for a in exchange.allocations():
        if a["status"] in ("proposed", "accepted"):
            for t in a["periods"]:
                used[(a["offer_id"], t)] += a["gpus"]
    assert used and max(used.values()) <= 16


def test_a_round_is_solved_with_its_proven_gap_and_every_request_explained(exchange: Exchange) -> None:
    offers = _world(exchange, caps={"provider": 0.4, "group": 0.7, "foreign": 0.7, "chip_vendor": 1.0})
    ids = [exchange.apply(f"job {i}", gpu_hours=16 * 168 * (2 + i % 3), gpus=16)["id"] for i in range(9)]
    for i, rid in enumerate(ids):
        exchange.review(rid, 3 + i % 7)
    rnd = exchange.allocate()
    res = rnd["result"]
    assert rnd["status"] == "allocated" and res["status"] in ("optimal", "within_gap"), res
    assert res["gap"] <= 0.01 and res["bound"] >= res["objective"] >= res["greedy_objective"] * 0.999
    requests = exchange.requests()
    assert all(requests[r]["status"] in ("allocated", "unallocated") and requests[r]["explanation"]["text"]
               for r in ids)
    assert any(requests[r]["status"] == "unallocated" for r in ids)  # demand exceeds capacity
    _capacity_respected(exchange, offers)
    proposed = exchange.allocations(status="proposed")
    a = proposed[0]
    assert a["applicant_share"] == pytest.approx(a["cost"] - a["subsidy"]) and a["subsidy"] == pytest.approx(
        a["cost"] * 0.4)
    dashboard = exchange.get("/programmes/ccp/dashboard").json()
    for row in dashboard["shares"]["provider"]:
        assert row["share"] <= 0.4 + 1e-6  # the provider cap held
    assert dashboard["budget"]["committed"] == pytest.approx(sum(x["subsidy"] for x in proposed), rel=1e-4)


def test_reviewers_never_score_their_own_organisation(exchange: Exchange) -> None:
    _world(exchange)
    rid = exchange.apply("conflicted job", gpu_hours=2_000)["id"]
    r = exchange.post(f"/requests/{rid}/reviews", {"score": 9}, exchange.conflicted)
    assert r.status_code == 403 and "conflict of interest" in r.text
    queue = exchange.get("/reviews/queue", exchange.conflicted).json()
    assert rid not in [q["id"] for q in queue]
    assert rid in [q["id"] for q in exchange.get("/reviews/queue", exchange.reviewer).json()]
    assert exchange.post(f"/requests/{rid}/reviews", {"score": 9}, exchange.applicant).status_code == 403
    assert exchange.post(f"/requests/{rid}/reviews", {"score": 11}, exchange.reviewer).status_code == 422
    exchange.review(rid, 7)
    assert exchange.post(f"/requests/{rid}/reviews", {"score": 8}, exchange.reviewer).status_code == 409


def test_small_requests_are_fast_tracked_and_placed_at_once(exchange: Exchange) -> None:
    _world(exchange)
    made = exchange.apply("tiny ablation", gpu_hours=64, gpus=2)
    assert made["fast_track"] is True and made["status"] == "allocated" and made["round"] is None
    assert "approved by rule" in made["explanation"]["fast_track"]
    assert [a["request_id"] for a in exchange.allocations()] == [made["id"]]


def test_fast_track_fits_around_what_rounds_already_hold(exchange: Exchange) -> None:
    exchange.offer("domestic", gpus=16)
    exchange.programme()
    exchange.open_round()
    big = exchange.apply("half the offer", gpu_hours=8 * 168 * 8, gpus=8)["id"]  # 8 GPUs, all 8 weeks
    exchange.review(big, 7)
    exchange.allocate()
    small = exchange.apply("tiny", gpu_hours=64, gpus=4)
    assert small["status"] == "allocated", small["explanation"]
    too_big = exchange.apply("tiny but wide", gpu_hours=90, gpus=9)  # 9 + 8 > 16 GPUs in every week
    assert too_big["status"] == "unallocated" and "capacity" in too_big["explanation"]["binding"]


def test_sensitive_work_goes_only_where_policy_allows(exchange: Exchange) -> None:
    _world(exchange)
    rid = exchange.apply("clinical notes", gpu_hours=8 * 168, data_classification="sensitive")["id"]
    exchange.review(rid, 8)
    exchange.allocate()
    [a] = exchange.allocations()
    assert a["provider"] == "domestic"


def test_a_request_with_no_eligible_provider_says_why(exchange: Exchange) -> None:
    exchange.offer("hyper", gpus=16)
    exchange.programme()
    exchange.open_round()
    rid = exchange.apply("clinical notes", gpu_hours=8 * 168, data_classification="sensitive")["id"]
    exchange.review(rid, 8)
    exchange.allocate()
    why = exchange.requests()[rid]["explanation"]
    assert why["allocated"] is False and "eligibility" in why["binding"]
    assert any("hyper" in reason for reason in why["policy"])


def test_a_job_larger_than_any_offer_is_explained(exchange: Exchange) -> None:
    _world(exchange)
    rid = exchange.apply("giant", gpu_hours=64 * 168, gpus=64)["id"]
    exchange.review(rid, 9)
    exchange.allocate()
    why = exchange.requests()[rid]["explanation"]
    assert why["allocated"] is False and "gang" in why["binding"]
    assert exchange.allocations() == []


def test_a_programme_with_no_budget_left_allocates_nothing(exchange: Exchange) -> None:
    _world(exchange, budget=10)
    rid = exchange.apply("needs money", gpu_hours=8 * 168)["id"]
    exchange.review(rid, 9)
    exchange.allocate()
    why = exchange.requests()[rid]["explanation"]
    assert why["allocated"] is False and "budget" in why["binding"]


def test_caps_that_cannot_hold_are_reported_and_nothing_is_saved(exchange: Exchange) -> None:
    _world(exchange, caps={"provider": 0.2})
    rid = exchange.apply("any", gpu_hours=8 * 168)["id"]
    exchange.review(rid, 9)
    rnd = exchange.allocate()
    assert rnd["status"] == "open" and rnd["result"]["status"] == "infeasible"
    assert any("provider" in c for c in rnd["result"]["conflicts"])
    assert exchange.allocations() == [] and exchange.requests()[rid]["status"] == "submitted"


def test_a_decline_re_solves_around_the_declined_offer(exchange: Exchange) -> None:
    offers = _world(exchange)
    rid = exchange.apply("move me", gpu_hours=8 * 168, data_classification="open")["id"]
    exchange.review(rid, 9)
    exchange.allocate()
    [first] = exchange.allocations()
    owner = exchange.staff if first["provider"] == "domestic" else exchange.admin
    other = exchange.staff if first["provider"] != "domestic" else exchange.stranger
    body = {"decision": "decline", "reason": "maintenance window"}
    assert exchange.post(f"/allocations/{first['id']}/decision", body, other).status_code == 403
    assert exchange.post(f"/allocations/{first['id']}/decision", {"decision": "decline"}, owner).status_code == 422
    r = exchange.post(f"/allocations/{first['id']}/decision", body, owner)
    assert r.status_code == 200, r.text
    live = [a for a in exchange.allocations() if a["status"] == "proposed"]
    assert len(live) == 1 and live[0]["offer_id"] != first["offer_id"] and live[0]["offer_id"] in offers.values()
    again = exchange.post(f"/allocations/{first['id']}/decision", {"decision": "accept"}, owner)
    assert again.status_code == 409


def test_applicants_must_be_eligible(exchange: Exchange) -> None:
    _world(exchange, eligible_kinds=["academic"])
    body = {"programme": "ccp", "title": "x-job", "gpu_types": ["H100"], "gpus_per_job": 8, "gpu_hours": 2000,
            "latest_period": 7, "data_classification": "open"}
    assert exchange.post("/requests", {**body, "organisation": "Test Startup"}, exchange.applicant).status_code == 403
    assert exchange.post("/requests", {**body, "organisation": "Foreign Lab"}, exchange.applicant).status_code == 403
    assert exchange.post("/requests", {**body, "organisation": "Test University"},
                         exchange.stranger).status_code == 403
    late = exchange.post("/requests", {**body, "organisation": "Test University", "latest_period": 8},
                         exchange.applicant)
    assert late.status_code == 422 and "latest_period" in late.text


def test_providers_and_their_accelerators_reach_the_live_scorecard(exchange: Exchange) -> None:
    exchange.offer("hyper", gpu="H200", gpus=8)
    items = exchange.client.get("/api/v1/inventory", headers=exchange.admin).json()
    compute = {(i["kind"], i["name"]): i for i in items if i["module"] == "compute"}
    assert compute[("compute_provider", "hyper")]["detail"]["control_plane_jurisdiction"] == "US"
    chip = compute[("accelerator", "H200 at hyper")]
    assert chip["layer"] == "chips" and chip["parties"] == ["Hyper Local", "NVIDIA"]
    report = exchange.client.get("/api/v1/assess/self", headers=exchange.admin).json()
    names = str(report)
    assert "compute-accelerator-h200-at-hyper" in names and "compute-compute-provider-hyper" in names
