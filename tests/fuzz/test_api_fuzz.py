"""Every API operation fuzzed from the live OpenAPI description (schemathesis), as a deployment admin:
no answer may be a server error, and every answer must match the schema the API publishes.

Bounded for CI: ``SOVSTACK_FUZZ_EXAMPLES`` examples per operation (default 25; about 3,000 requests
over the ~120 operations), on whichever database the suite runs against. Hypothesis is derandomised,
so a failure reproduces.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import FailureGroup, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import make_key, make_user

EXAMPLES = int(os.environ.get("SOVSTACK_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def admin_headers(app: FastAPI) -> dict[str, str]:
    db = app.state.db
    admin = make_user(db, "fuzz-admin@test.example", admin=True)
    return {"Authorization": f"Bearer {make_key(db, admin['id'], ['read', 'write', 'admin'])}"}


def _fuzz(operation: Any, headers: dict[str, str]) -> list[str]:
    """The failures found on one operation (each a one-line summary)."""
    found: list[str] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        try:
            case.call_and_validate(headers=headers, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                summary = str(failure).splitlines()[0][:300]
                found.append(f"{operation.label}: {summary} ({case.as_curl_command()[:300]})")

    run()
    return found


def test_no_server_error_and_every_answer_matches_the_schema(app: FastAPI, admin_headers: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, headers=admin_headers)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operations += 1
        failures += _fuzz(result.ok(), admin_headers)
    assert operations > 90
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(dict.fromkeys(failures))


def test_values_the_database_cannot_hold_are_bad_input_not_server_errors(client: Any,
                                                                          admin_headers: dict[str, str]) -> None:
    for path in ("/api/v1/organisations/9223372036854775808", "/api/v1/organisations/2147483648",
                 "/api/v1/organisations/-9223372036854775809"):
        r = client.get(path, headers=admin_headers)
        assert r.status_code in (404, 422), (path, r.status_code, r.text)
    nul = client.get("/api/v1/assess/criteria", params={"name": "\x00"}, headers=admin_headers)
    assert nul.status_code == 422 and nul.json()["error"]["field"] == "url"
    r = client.post("/api/v1/organisations", headers=admin_headers,
                    json={"name": "Nul\u0000Org", "kind": "government", "jurisdiction": "IN"})
    assert r.status_code in (201, 422), r.text  # SQLite keeps a NUL; PostgreSQL cannot, and says so
    if r.status_code == 422:
        assert "NUL" in r.json()["error"]["message"]


def test_numbers_that_are_not_numbers_or_absurdly_large_are_refused(client: Any,
                                                                     admin_headers: dict[str, str]) -> None:
    body = {"name": "huge", "title": "Huge budget", "budget": 1e308, "subsidy_rate": 0.4, "start": "2027-01-04",
            "periods": 4}
    r = client.post("/api/v1/compute/programmes", headers=admin_headers, json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == "budget"
    raw = '{"name": "nan", "title": "NaN budget", "budget": NaN, "subsidy_rate": 0.4, "start": "2027-01-04", ' \
          '"periods": 4}'
    r = client.post("/api/v1/compute/programmes", headers={**admin_headers, "content-type": "application/json"},
                    content=raw)
    assert r.status_code in (400, 422) and r.status_code < 500
    assert client.post("/api/v1/compute/programmes", headers=admin_headers,
                       json={**body, "budget": 1e9}).status_code == 201
