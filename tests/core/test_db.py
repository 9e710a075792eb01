"""The database boundary: SQLite's write lock held past the busy timeout answers 503 with Retry-After, everywhere."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sovstack.app import create_app
from sovstack.core import identity
from sovstack.core.context import unit_of_work
from sovstack.core.schemas import OrganisationCreate
from sovstack.core.settings import Settings
from tests.conftest import OPERATOR, make_key, make_user
from tests.console.test_pages import csrf_of, post_login


@pytest.fixture
def impatient(settings: Settings) -> Iterator[FastAPI]:
    """An app whose SQLite writes give up on another's lock after 0.2 s instead of 15 s."""
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock")
    app = create_app(settings.model_copy(update={"sqlite_busy_seconds": 0.2}))
    yield app
    app.state.db.dispose()


@contextmanager
def write_lock(settings: Settings) -> Iterator[None]:
    """Another connection (another process, a backup, a migration) holds the database's write lock."""
    holder = sqlite3.connect(settings.home / "sovstack.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def assert_busy(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert "database is busy" in response.text
    assert "UPDATE" not in response.text and "sqlite" not in response.text.lower()  # no SQL, no driver words


def test_a_held_write_lock_answers_503_with_retry_after(impatient: FastAPI, settings: Settings) -> None:
    db = impatient.state.db
    admin = make_user(db, "admin@test.example", admin=True)
    reader = make_user(db, "reader@test.example")
    with db.session() as s, unit_of_work(s, OPERATOR):
        org = identity.create_organisation(s, OPERATOR, OrganisationCreate(name="Locked Org", kind="government",
                                                                           jurisdiction="IN")).id
    admin_key, read_key = make_key(db, admin["id"], ["read", "write", "admin"]), make_key(db, reader["id"], ["read"])
    with TestClient(impatient, raise_server_exceptions=False) as client:
        for key in (admin_key, read_key):  # their first use writes last_used_at: do it before the lock
            assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert post_login(client, admin["email"], admin["password"]).status_code == 303
        token = csrf_of(client.get("/organisations").text)
        with write_lock(settings):
            # A change through the API.
            assert_busy(client.patch(f"/api/v1/organisations/{org}", json={"name": "Renamed"},
                                     headers={"Authorization": f"Bearer {admin_key}"}))
            # A refusal, whose audit event cannot be written either (it was a 500).
            assert_busy(client.patch(f"/api/v1/organisations/{org}", json={"name": "Renamed"},
                                     headers={"Authorization": f"Bearer {read_key}"}))
            # A console form: the same answer as a page.
            page = client.post("/organisations", data={"name": "Another Org", "kind": "startup",
                                                       "jurisdiction": "IN", "csrf_token": token})
            assert_busy(page)
            assert page.headers["content-type"].startswith("text/html")
            # Reads go on (WAL).
            assert client.get(f"/api/v1/organisations/{org}",
                              headers={"Authorization": f"Bearer {admin_key}"}).json()["name"] == "Locked Org"
        renamed = client.patch(f"/api/v1/organisations/{org}", json={"name": "Renamed"},
                               headers={"Authorization": f"Bearer {admin_key}"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"
