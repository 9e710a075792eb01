"""The cut-off drill: a provider, a jurisdiction or a chip vendor withdrawn, the re-solve, the report, the undo."""

from __future__ import annotations

from typing import Any

from tests.compute.conftest import Exchange


def _allocated(exchange: Exchange) -> dict[str, int]:
    offers = {"domestic": exchange.offer("domestic", gpus=16, price=100),
              "hyper": exchange.offer("hyper", gpus=16, price=120),
              "euro": exchange.offer("euro", gpus=16, price=90, gpu_type="MI300X")}
    exchange.programme(caps={"provider": 0.7, "group": 0.7, "foreign": 0.7})
    exchange.open_round()
    for i in range(4):
        rid = exchange.apply(f"job {i}", gpu_hours=8 * 168 * 2, gpus=8, gpu_types=["H100", "MI300X"])["id"]
        exchange.review(rid, 5 + i)
    exchange.allocate()
    return offers


def _state(exchange: Exchange) -> list[tuple[Any, ...]]:
    return sorted((a["id"], a["offer_id"], a["status"]) for a in exchange.allocations())


def test_dry_run_reports_and_changes_nothing(exchange: Exchange) -> None:
    _allocated(exchange)
    before = _state(exchange)
    r = exchange.post("/cutoffs", {"provider": "domestic", "dry_run": True})
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    on_domestic = [a for a in exchange.allocations() if a["provider"] == "domestic"]
    assert len(report["displaced"]) == len(on_domestic) > 0
    assert report["exposure"]["ccp"]["exposed_share"] <= 0.7 + 1e-6
    assert _state(exchange) == before
    assert not any(o["withdrawn"] for o in exchange.get("/offers").json())
    assert exchange.get("/cutoffs").json() == []


def test_cutoff_re_solves_reports_and_restores(exchange: Exchange) -> None:
    offers = _allocated(exchange)
    before = _state(exchange)
    requests_before = {k: v["status"] for k, v in exchange.requests().items()}
    r = exchange.post("/cutoffs", {"provider": "domestic"})
    assert r.status_code == 201, r.text
    drill = r.json()
    report = drill["report"]
    assert report["displaced"] and report["displaced_gpu_hours"] == sum(d["gpu_hours"] for d in report["displaced"])
    live = [a for a in exchange.allocations() if a["status"] in ("proposed", "accepted")]
    assert all(a["offer_id"] != offers["domestic"] for a in live)  # nothing left on withdrawn capacity
    lost = sum(d["gpu_hours"] for d in report["displaced"] if not d["re_placed"])
    assert report["lost_gpu_hours"] == lost
    assert report["re_placed"] == sum(1 for d in report["displaced"] if d["re_placed"])
    withdrawn = {o["id"] for o in exchange.get("/offers").json() if o["withdrawn"]}
    assert withdrawn == {offers["domestic"]}
    # a new request cannot land on withdrawn capacity
    assert exchange.post("/cutoffs", {"provider": "domestic"}).status_code == 404
    restored = exchange.post(f"/cutoffs/{drill['id']}/restore", {})
    assert restored.status_code == 200 and restored.json()["restored_at"]
    after = [row for row in _state(exchange) if row[0] <= before[-1][0]]
    assert after == before
    assert {k: v["status"] for k, v in exchange.requests().items()} == requests_before
    assert exchange.post(f"/cutoffs/{drill['id']}/restore", {}).status_code == 409


def test_cutoff_by_jurisdiction_and_chip_vendor(exchange: Exchange) -> None:
    offers = _allocated(exchange)
    us = exchange.post("/cutoffs", {"jurisdiction": "US", "dry_run": True}).json()
    assert us["offers"] == [offers["hyper"]]  # the parent and control plane are in the US
    amd = exchange.post("/cutoffs", {"chip_vendor": "amd", "dry_run": True}).json()
    assert amd["offers"] == [offers["euro"]]


def test_cutoff_bad_input(exchange: Exchange) -> None:
    _allocated(exchange)
    assert exchange.post("/cutoffs", {}).status_code == 422
    assert exchange.post("/cutoffs", {"provider": "domestic", "chip_vendor": "AMD"}).status_code == 422
    assert exchange.post("/cutoffs", {"provider": "nobody"}).status_code in (404, 422)
    assert exchange.post("/cutoffs", {"jurisdiction": "XX"}).status_code == 422
    assert exchange.post("/cutoffs", {"provider": "domestic"}, exchange.staff).status_code == 403
    assert exchange.post("/cutoffs/99/restore", {}).status_code in (404, 422)


def test_when_caps_cannot_hold_after_a_cutoff_the_drill_says_so_and_re_places(exchange: Exchange) -> None:
    exchange.offer("domestic", gpus=16, price=100)
    exchange.offer("hyper", gpus=32, price=100)  # room for both jobs, but the foreign cap allows one
    exchange.programme(caps={"foreign": 0.5})
    exchange.open_round()
    for i in range(2):
        exchange.review(exchange.apply(f"job {i}", gpu_hours=16 * 168, gpus=16, latest_period=0)["id"], 6 + i)
    exchange.allocate()
    assert {a["provider"] for a in exchange.allocations()} == {"domestic", "hyper"}  # the foreign cap: half each
    report = exchange.post("/cutoffs", {"provider": "domestic", "dry_run": True}).json()["report"]
    assert report["re_placed"] == 1 and report["lost_gpu_hours"] == 0
    [suspended] = report["suspended"]
    assert "concentration caps" in suspended["rules"] and any("foreign" in c for c in suspended["because"])
    assert any("without category floors and concentration caps" in note for note in report["caps_note"])


def test_only_the_operator_reads_cutoff_reports(exchange: Exchange) -> None:
    """M1: a drill's report names every organisation's requests, GPU-hours and offers."""
    _allocated(exchange)
    assert exchange.post("/cutoffs", {"provider": "domestic", "dry_run": False}).status_code == 201
    for who in (exchange.applicant, exchange.stranger, exchange.staff, exchange.reviewer):
        r = exchange.client.get("/api/v1/compute/cutoffs", headers=who)
        assert r.status_code == 403 and "Test University" not in r.text
    assert len(exchange.client.get("/api/v1/compute/cutoffs", headers=exchange.admin).json()) == 1
