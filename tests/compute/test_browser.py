"""The compute exchange in real headless Chromium against the real server: apply, review, allocate, accept,
and a cut-off drill's dry run — with no request leaving the server and no browser errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.compute.conftest import Exchange
from tests.conftest import sign_in, watch_browser

pytestmark = pytest.mark.browser



def test_apply_review_allocate_accept_and_drill(exchange: Exchange, server: Any, browser_page: Any,
                                                tmp_path: Path) -> None:
    exchange.offer("domestic", gpus=16, price=100)
    exchange.offer("euro", gpu="L40S", gpus=16, price=60)
    exchange.programme()
    exchange.open_round()
    page, url = browser_page, server.url
    seen = watch_browser(page, url)

    sign_in(page, url, "applicant@test.example", "/compute/apply")
    page.select_option("select[name=organisation]", "Test University")
    page.fill("input[name=title]", "Dialect speech model (browser test)")
    page.fill("input[name=gpu_types]", "H100")
    page.fill("input[name=gpus_per_job]", "8")
    page.fill("input[name=gpu_hours]", "2688")
    page.fill("input[name=latest_period]", "7")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_selector("text=submitted for review")

    sign_in(page, url, "reviewer@test.example", "/compute/reviews")
    page.fill("#queue input[name=score]", "8")
    page.get_by_role("button", name="Score").click()
    page.wait_for_selector("text=scored 8")

    sign_in(page, url, "admin@test.example", "/compute/programmes/ccp")
    page.click("#allocate")
    page.wait_for_selector("text=proven gap")
    assert "placed on offer" in page.inner_text("#requests")
    assert page.locator("svg.chart").count() >= 1

    sign_in(page, url, "staff@test.example", "/compute/programmes/ccp")
    page.get_by_role("button", name="Accept").click()
    page.wait_for_selector("text=accepted")
    assert exchange.allocations()[0]["status"] == "accepted"

    sign_in(page, url, "admin@test.example", "/compute/cutoff")
    page.select_option("select[name=selector]", "provider")
    page.fill("input[name=value]", "domestic")
    page.get_by_role("button", name="Run the drill").click()
    page.wait_for_selector("#report")
    assert page.inner_text("#displaced") == "1" and "Dry run" in page.inner_text("#report")
    assert not any(o["withdrawn"] for o in exchange.get("/offers").json())  # a dry run changes nothing
    shot = tmp_path / "compute.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000
    seen.assert_clean()
