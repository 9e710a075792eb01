"""The console in real headless Chromium against the real server process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.browser

def test_key_is_shown_once_and_audited(server: Any, admin: dict[str, Any], browser_page: Any,
                                       tmp_path: Path) -> None:
    page = browser_page
    own = urlsplit(server.url).netloc
    foreign: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: foreign.append(r.url) if urlsplit(r.url).netloc != own else None)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(f"{server.url}/keys")
    assert "/login" in page.url
    page.get_by_label("Email").fill(admin["email"])
    page.get_by_label("Password").fill(admin["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/keys")

    page.get_by_label("Name", exact=True).fill("browser laptop")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_selector("#new-key")
    key = page.inner_text("#new-key").strip()
    assert re.fullmatch(r"sk-[0-9a-f]{8}_[A-Za-z0-9_-]{20,}", key), key
    assert "it will not be shown again" in page.content()
    keys_shot = tmp_path / "keys.png"
    page.screenshot(path=str(keys_shot), full_page=True)

    page.goto(f"{server.url}/keys")
    html = page.content()
    assert key not in html
    assert key.split("_")[0] in html
    assert page.query_selector("#new-key") is None

    page.goto(f"{server.url}/audit")
    assert "identity.key.create" in page.content()
    assert "Chain intact" in page.content()

    page.goto(f"{server.url}/")
    dashboard_shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(dashboard_shot), full_page=True)

    for shot in (keys_shot, dashboard_shot):
        assert shot.stat().st_size > 1000
    assert foreign == [], f"requests left the test server: {foreign}"
    assert problems == [], f"browser errors (CSP?): {problems}"
