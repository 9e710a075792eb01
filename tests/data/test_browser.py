"""The data commons in real headless Chromium against the real server: publish, request, query."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import sign_in, watch_browser
from tests.data.conftest import CSV, Commons
from tests.data.test_airlock import wait_for_check

pytestmark = pytest.mark.browser



def test_publish_request_and_query_in_the_browser(commons: Commons, server: Any, browser_page: Any,
                                                  tmp_path: Path) -> None:
    page, url = browser_page, server.url
    seen = watch_browser(page, url)
    csv = tmp_path / "visits.csv"
    csv.write_text(CSV)

    sign_in(page, url, "steward@test.example", "/data/new")
    page.fill("#ds-name", "browser_visits")
    page.fill("#ds-title", "Visits (synthetic, browser test)")
    page.fill("#ds-licence", "CC-BY-4.0")
    page.select_option("#ds-class", "sensitive")
    page.fill("#ds-entity", "person_id")
    page.fill("#ds-dp-keys", "region=North,South")
    page.get_by_role("button", name="Create dataset").click()
    page.wait_for_url(f"{url}/data/datasets/browser_visits*")
    page.set_input_files("#pub-file", str(csv))
    page.get_by_role("button", name="Publish").click()
    page.wait_for_selector("text=Version 1 published")
    assert "60 rows" in page.content()

    sign_in(page, url, "analyst@test.example", "/data/datasets/browser_visits")
    page.fill("#req-purpose", "Visits by region for a synthetic study")
    page.get_by_role("button", name="Request access").click()
    page.wait_for_selector("text=Access requested")
    request_id = commons.client.get("/api/v1/data/requests/inbox", headers=commons.steward).json()[0]["id"]
    assert commons.client.post(f"/api/v1/data/requests/{request_id}/decision", json={"approve": True},
                               headers=commons.steward).status_code == 200

    page.goto(f"{url}/data/sandbox")
    page.fill("#sandbox-sql", "SELECT region, count(*) AS visits FROM browser_visits GROUP BY region")
    page.get_by_role("button", name="Run").click()
    page.wait_for_selector("#result-chart")
    assert page.locator("#result-table tbody tr").count() == 2
    page.wait_for_selector("#privacy-report")
    page.get_by_role("button", name="Run").click()  # the same question again: the same answer, nothing spent
    page.wait_for_selector("text=nothing spent")

    page.click("#to-airlock")  # the same query, for exact figures: held until a steward releases it
    page.fill("#airlock-purpose", "Exact visit counts for the browser test (synthetic)")
    page.get_by_role("button", name="Submit for review").click()
    page.wait_for_selector("#airlock-held")
    request_id = int(page.url.split("/data/airlock/")[1].split("?")[0])
    wait_for_check(commons, request_id)
    assert commons.client.post(f"/api/v1/data/airlock/{request_id}/decision", json={"release": True},
                               headers=commons.steward).status_code == 200
    page.reload()
    page.wait_for_selector("#airlock-released")
    shot = tmp_path / "sandbox.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000
    seen.assert_clean()
