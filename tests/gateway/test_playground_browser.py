"""The gateway playground in real headless Chromium against the real server and a real upstream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from sovstack.core import parties
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import PartyCreate
from sovstack.core.settings import Settings
from sovstack.gateway import service
from sovstack.gateway.schemas import CutoffRequest, DeploymentCreate, ModelCreate
from tests.gateway.upstream import Upstream

pytestmark = pytest.mark.browser

SYSTEM = Principal.system("test")


def in_unit(settings: Settings, work: Callable[[Session], object]) -> None:
    db = Database(settings)
    try:
        with db.session() as s, unit_of_work(s, SYSTEM):
            work(s)
    finally:
        db.dispose()


def register(s: Session, settings: Settings, url: str) -> None:
    for name, kind in (("Desi Cloud", "model_host"), ("Bharat Models", "model_developer")):
        parties.create_party(s, SYSTEM, PartyCreate(name=name, kinds=[kind], jurisdiction="IN"))
    service.create_model(s, SYSTEM, ModelCreate(name="indic-chat"))
    service.create_deployment(s, SYSTEM, settings, DeploymentCreate(
        name="indic-live", model="indic-chat", base_url=url, upstream_model="up", hosting_jurisdiction="IN",
        operator="Desi Cloud", developer="Bharat Models", open_weights=True, licence="Apache-2.0"))


def test_playground_streams_an_answer(server: Any, settings: Settings, admin: dict[str, Any], browser_page: Any,
                                      upstreams: Callable[[str], Upstream], tmp_path: Path) -> None:
    live = upstreams("live")
    in_unit(settings, lambda s: register(s, settings, live.url))
    page = browser_page
    own = {urlsplit(server.url).netloc}
    foreign: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: foreign.append(r.url) if urlsplit(r.url).netloc not in own else None)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(f"{server.url}/gateway/playground")
    page.get_by_label("Email").fill(admin["email"])
    page.get_by_label("Password").fill(admin["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/gateway/playground")

    page.get_by_label("Model").select_option("indic-chat")
    page.get_by_label("Classification").select_option("restricted")
    page.get_by_label("Message").fill("namaste")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-status")).to_have_text("Done.", timeout=10_000)

    assert page.inner_text("#pg-output") == "part0 part1 part2 "
    assert page.inner_text("#pg-deployment") == "indic-live"
    assert page.inner_text("#pg-tries") == "1"
    assert page.inner_text("#pg-level") == "restricted"
    assert page.is_hidden("#pg-error")
    assert live.received[-1]["messages"] == [{"role": "user", "content": "namaste"}]
    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)

    # A refusal (no such model any more) is shown in the error box with its reasons.
    in_unit(settings, lambda s: service.cutoff(s, SYSTEM, CutoffRequest(party="Desi Cloud", reason="browser drill")))
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("#pg-error:not([hidden])")
    assert "no deployment of indic-chat may serve" in page.inner_text("#pg-error")
    assert "withdrawn: browser drill" in page.inner_text("#pg-error")

    assert foreign == [], f"requests left the test server: {foreign}"
    assert [p for p in problems if "403" not in p] == [], f"browser errors (CSP?): {problems}"
