"""The app as a whole: every route is authenticated unless listed public; probes; metrics; headers."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from sovstack.app import all_routes
from sovstack.core.db import Database
from sovstack.core.settings import Settings


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_refuses_anonymous_requests(app: FastAPI, client: TestClient) -> None:
    """Walks every registered route, so routes that modules add later are covered too."""
    checked = 0
    for route in all_routes(app):
        if isinstance(route, Mount) or not isinstance(route, Route):
            continue
        if route.path.startswith(app.state.public_paths):
            continue  # declared public: the core's probes and login page, or a module's declared paths
        for method in sorted(route.methods or {"GET"}):
            if method == "HEAD":
                continue
            r = client.request(method, _fill(route.path), follow_redirects=False)
            api = route.path.startswith(("/api/", "/v1/", "/metrics"))
            if api:
                assert r.status_code == 401, (method, route.path, r.status_code)
                err = r.json()["error"]
                if route.path.startswith("/v1/messages"):  # Anthropic's API, in Anthropic's error shape
                    assert r.json()["type"] == "error" and err["type"] == "authentication_error"
                else:
                    assert "unauthenticated" in (err["type"], err.get("code"))  # /v1 answers in OpenAI's shape
            else:
                assert r.status_code in (303, 401, 403), (method, route.path, r.status_code)
                if r.status_code == 303:
                    assert r.headers["location"].startswith("/login")
            checked += 1
    assert checked > 20


def test_public_probes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["migrations"] == client.app.state.db.head_revision()


def test_openapi_and_metrics_need_a_key(admin_client: TestClient) -> None:
    spec = admin_client.get("/api/v1/openapi.json").json()
    assert "/api/v1/me" in spec["paths"] and "/api/v1/organisations" in spec["paths"]
    admin_client.get("/api/v1/me")
    metrics = admin_client.get("/metrics").text
    assert 'sovstack_http_requests_total{method="GET",route="/api/v1/me",status="200"}' in metrics


def test_security_headers_forbid_foreign_assets(client: TestClient) -> None:
    headers = client.get("/healthz").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_unknown_route_and_method_are_json_errors(admin_client: TestClient) -> None:
    r = admin_client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = admin_client.put("/api/v1/me")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"


def test_database_down_gives_503_not_500(app: FastAPI, client: TestClient, admin_key: str) -> None:
    broken = Settings(home=app.state.settings.home, environment="test", secret_key="x" * 20,
                      database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    app.state.db.dispose()
    app.state.db = Database(broken)
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {admin_key}"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"


def test_a_server_error_carries_every_security_header_and_no_trace(app: FastAPI, admin_key: str) -> None:
    def boom() -> None:
        raise ZeroDivisionError("internal detail that must not leak")

    app.add_api_route("/api/v1/test-boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/v1/test-boom", headers={"Authorization": f"Bearer {admin_key}"})
    assert r.status_code == 500 and r.json()["error"]["type"] == "internal_error"
    assert "internal detail" not in r.text and "Traceback" not in r.text
    for name in ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"):
        assert name in r.headers, name
    assert r.headers["cache-control"] == "no-store"  # an authenticated answer


def test_signed_in_answers_are_not_cached_and_tls_gets_hsts(client: TestClient, admin_key: str) -> None:
    signed_in = client.get("/api/v1/me", headers={"Authorization": f"Bearer {admin_key}"})
    assert signed_in.headers["cache-control"] == "no-store" and "strict-transport-security" not in signed_in.headers
    assert "no-store" not in client.get("/static/style.css").headers.get("cache-control", "")
    secure = TestClient(client.app, base_url="https://testserver")
    assert "max-age=" in secure.get("/healthz").headers["strict-transport-security"]


def test_json_bodies_too_deep_or_not_utf8_are_400_saying_so(admin_client: TestClient) -> None:
    """Bodies the framework parses: gateway catalogue, organisations, assessment diffs (#14)."""
    deep = "[" * 100_000 + "]" * 100_000
    for path, body in (("/api/v1/gateway/apply", f'{{"models": {deep}}}'),
                       ("/api/v1/organisations", f'{{"name": {deep}}}'),
                       ("/api/v1/assess/diff", f'{{"before": {deep}, "after": {{}}}}')):
        r = admin_client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, path
        assert r.json()["error"] == {"type": "invalid_request", "message": "the request body is nested too deeply "
                                     "to read", "field": "body", "reasons": []}
    latin1 = '{"name": "Café"}'.encode("latin-1")
    r = admin_client.post("/api/v1/organisations", content=latin1, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "the request body is not UTF-8 JSON"
