"""Shared fixtures: a fresh deployment per test on SQLite (default) or PostgreSQL (SOVSTACK_DATABASE_URL)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from sovstack.app import create_app
from sovstack.core import identity
from sovstack.core.audit import ensure_head
from sovstack.core.context import CORE_SCOPES, Principal, unit_of_work
from sovstack.core.db import Base, Database
from sovstack.core.schemas import ApiKeyCreate, UserCreate
from sovstack.core.settings import Settings

SECRET = "test-secret-key-for-the-suite-only"
# A "billion laughs": 342 bytes of YAML whose aliases stand for 9⁹ (387 million) strings.
LAUGHS = "\n".join([f'a: &a [{", ".join(["lol"] * 9)}]'] + [
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]) + "\n"
PASSWORD = "correct horse battery staple"
OPERATOR = Principal.system("test")


def _settings(home: Path, **extra: Any) -> Settings:
    return Settings(home=home, environment="test", secret_key=SECRET, **extra)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Migrated once per run: a SQLite file to copy, or the PostgreSQL schema to truncate."""
    home = tmp_path_factory.mktemp("template")
    settings = _settings(home)
    db = Database(settings)
    if not settings.is_sqlite:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    db.upgrade()
    db.dispose()
    return settings


def _truncate(db: Database) -> None:
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    with db.session() as session:
        ensure_head(session)
        session.commit()


@pytest.fixture
def settings(template: Settings, tmp_path: Path) -> Settings:
    """A fresh, migrated deployment in tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    settings = _settings(home)
    if settings.is_sqlite:
        shutil.copy(template.home / "sovstack.db", home / "sovstack.db")
    else:
        db = Database(settings)
        _truncate(db)
        db.dispose()
    return settings


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    app = create_app(settings)
    yield app
    app.state.db.dispose()


@pytest.fixture
def db(app: FastAPI) -> Database:
    database: Database = app.state.db
    return database


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def make_user(db: Database, email: str, *, admin: bool = False, password: str = PASSWORD) -> dict[str, Any]:
    with db.session() as s, unit_of_work(s, OPERATOR):
        user = identity.create_user(s, OPERATOR, UserCreate(email=email, name=email.split("@")[0],
                                                            password=password, is_admin=admin))
    return {"id": user.id, "email": user.email, "password": password}


def make_key(db: Database, user_id: int, scopes: list[str] | None = None, **extra: Any) -> str:
    scopes = scopes or ["read", "write"]
    with db.session() as s, unit_of_work(s, OPERATOR):
        _key, secret = identity.create_api_key(
            s, OPERATOR, ApiKeyCreate(name="test", scopes=scopes, user_id=user_id, **extra),
            known_scopes=[*CORE_SCOPES, *scopes])
    return secret


@pytest.fixture
def admin(db: Database) -> dict[str, Any]:
    return make_user(db, "admin@test.example", admin=True)


@pytest.fixture
def admin_key(db: Database, admin: dict[str, Any]) -> str:
    return make_key(db, admin["id"], ["read", "write", "admin"])


@pytest.fixture
def admin_client(client: TestClient, admin_key: str) -> TestClient:
    client.headers["Authorization"] = f"Bearer {admin_key}"
    return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def server_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVSTACK_")}
    env.update(SOVSTACK_HOME=str(settings.home), SOVSTACK_SECRET_KEY=SECRET, SOVSTACK_ENVIRONMENT="test",
               SOVSTACK_DATABASE_URL=settings.database_url, SOVSTACK_LOG_LEVEL="warning")
    return env


def start_server(settings: Settings, workers: int = 1, timeout: float = 30) -> Server:
    port = free_port()
    log = settings.home / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "sovstack", "serve", "--port", str(port), "--workers", str(workers)],
        env=server_env(settings), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return Server(url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not become ready: {log.read_text()[-2000:]}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    """The real server process (`python -m sovstack serve`) on a free 127.0.0.1 port."""
    srv = start_server(settings)
    yield srv
    stop_server(srv)


# Real Chromium (Debian's package), driven by Playwright ------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    """The browser binary; a missing one fails the run in CI and skips it elsewhere."""
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is required in CI but {CHROMIUM} is missing")
    pytest.skip(f"no Chromium at {CHROMIUM}")


def playwright_api() -> Any:
    """The Playwright sync API; required in CI, optional elsewhere."""
    if os.environ.get("CI"):
        from playwright import sync_api

        return sync_api
    return pytest.importorskip("playwright.sync_api")


@dataclass
class BrowserWatch:
    """What a page did that a console page must never do: fetch from another host, or log an error."""

    foreign: list[str]
    problems: list[str]

    def assert_clean(self) -> None:
        assert self.foreign == [], f"requests left the test server: {self.foreign}"
        assert self.problems == [], f"browser errors (CSP?): {self.problems}"


def watch_browser(page: Any, url: str) -> BrowserWatch:
    """Record every request to a host other than ``url``'s and every console or page error."""
    own = urlsplit(url).netloc
    seen = BrowserWatch([], [])
    page.on("request", lambda r: seen.foreign.append(r.url) if urlsplit(r.url).netloc != own else None)
    page.on("console", lambda m: seen.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.problems.append(str(e)))
    return seen


def sign_in(page: Any, url: str, email: str, then: str, password: str = PASSWORD) -> None:
    """Sign in through the login form the console sends a visitor of ``then`` to, and land on ``then``."""
    page.context.clear_cookies()
    page.goto(f"{url}{then}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}{then}")


@pytest.fixture
def browser_page() -> Iterator[Any]:
    executable = chromium_path()
    with playwright_api().sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()
