"""The live scorecard in real headless Chromium against the real server: SVG charts, nothing fetched
from elsewhere, no CSP or script errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sovstack.core.db import Database
from tests.assess.conftest import EXAMPLES
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.browser


def test_scorecard_and_analyse_in_the_browser(db: Database, server: Any, browser_page: Any,
                                              tmp_path: Path) -> None:
    user = make_user(db, "viewer@test.example")
    page, url = browser_page, server.url
    foreign: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: foreign.append(r.url) if urlsplit(r.url).netloc != urlsplit(url).netloc else None)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(f"{url}/assess")
    page.get_by_label("Email").fill(user["email"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/assess")
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
    assert foreign == [], f"requests left the test server: {foreign}"
    assert problems == [], f"browser errors (CSP?): {problems}"
