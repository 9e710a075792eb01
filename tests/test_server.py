"""The real server process: probes, authenticated requests, and several workers writing at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sovstack.core import audit
from sovstack.core.db import Database
from sovstack.core.settings import Settings
from tests.conftest import Server, make_key, make_user, start_server, stop_server

pytestmark = pytest.mark.server


def test_real_server_answers(server: Server, settings: Settings) -> None:
    db = Database(settings)
    admin = make_user(db, "admin@test.example", admin=True)
    key = make_key(db, admin["id"], ["read", "write", "admin"])
    db.dispose()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/readyz").json()["status"] == "ok"
        assert http.get("/api/v1/me").status_code == 401
        me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["user"]["email"] == "admin@test.example"
        login = http.get("/login")
        assert login.status_code == 200 and "text/html" in login.headers["content-type"]


def test_two_workers_writing_at_once_keep_one_chain(settings: Settings) -> None:
    db = Database(settings)
    admin = make_user(db, "admin@test.example", admin=True)
    key = make_key(db, admin["id"], ["read", "write", "admin"])
    srv = start_server(settings, workers=2)
    try:
        headers = {"Authorization": f"Bearer {key}"}

        def create(i: int) -> int:
            with httpx.Client(base_url=srv.url, timeout=30, headers=headers) as http:
                body = {"name": f"Org {i:03d}", "kind": "academic", "jurisdiction": "IN"}
                return http.post("/api/v1/organisations", json=body).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(create, range(60)))
        assert codes == [201] * 60
    finally:
        stop_server(srv)
    with db.session() as s:
        result = audit.verify(s)
    db.dispose()
    assert result.ok and result.checked == 62  # user + key + 60 organisations
