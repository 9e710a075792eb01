"""The live scorecard in real headless Chromium against the real server: SVG charts, nothing fetched
from elsewhere, no CSP or script errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sovstack.core.db import Database
from tests.assess.conftest import EXAMPLES
from tests.conftest import make_user, sign_in, watch_browser

pytestmark = pytest.mark.browser


def test_scorecard_and_analyse_in_the_browser(db: Database, server: Any, browser_page: Any,
                                              tmp_path: Path) -> None:
    user = make_user(db, "viewer@test.example")
    page, url = browser_page, server.url
    seen = watch_browser(page, url)
    sign_in(page, url, user["email"], "/assess")
    radar = page.locator('#assess-radar svg[aria-label="Pressure radar"]')
    assert radar.count() == 1 and radar.bounding_box()["width"] > 100
    assert page.locator("#assess-drills table tbody tr").count() >= 5
    page.locator("#assess-drills details summary").first.click()
    assert page.locator("#assess-drills details[open] svg").count() == 1

    page.locator("#assess-layers a").first.click()
    page.wait_for_selector("#explain-table")

    page.goto(f"{url}/assess/analyse")
    page.fill("#analyse-text", (EXAMPLES / "national-cloud.yaml").read_text())
    page.get_by_role("button", name="Assess").click()
    page.wait_for_selector("#analyse-report #assess-radar svg")
    shot = tmp_path / "assess.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000
    seen.assert_clean()
