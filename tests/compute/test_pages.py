"""The compute exchange's console pages, in process: forms refuse bad input naming the field, and every
action is authorised in the service layer whatever the page shows."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.compute.conftest import Exchange
from tests.conftest import PASSWORD
from tests.console.test_pages import csrf_of, post_login


def _login(client: TestClient, email: str) -> None:
    client.cookies.clear()
    assert post_login(client, email, PASSWORD).status_code == 303


def _world(exchange: Exchange) -> None:
    exchange.offer("domestic", gpus=16)
    exchange.programme()
    exchange.open_round()


def test_every_compute_page_renders(exchange: Exchange) -> None:
    _world(exchange)
    client = exchange.client
    _login(client, "admin@test.example")
    for path, text in (("/compute", "foreign-controlled"), ("/compute/programmes/ccp", "Requests and why"),
                       ("/compute/apply", "Apply for GPU-hours"), ("/compute/reviews", "Review queue"),
                       ("/compute/cutoff", "Cut-off drill")):
        page = client.get(path)
        assert page.status_code == 200 and text in page.text, path
    assert client.get("/compute/programmes/nope").status_code == 404


def test_the_application_form_names_the_wrong_field(exchange: Exchange) -> None:
    _world(exchange)
    client = exchange.client
    _login(client, "applicant@test.example")
    page = client.get("/compute/apply")
    form = {"csrf_token": csrf_of(page.text), "programme": "ccp", "organisation": "Test University",
            "title": "A study", "gpu_types": "H100", "gpus_per_job": "0", "gpu_hours": "100", "latest_period": "3"}
    bad = client.post("/compute/apply", data=form)
    assert bad.status_code == 422 and "gpus_per_job" in bad.text and 'value="A study"' in bad.text
    ok = client.post("/compute/apply", data={**form, "gpus_per_job": "2"}, follow_redirects=False)
    assert ok.status_code == 303
    forged = client.post("/compute/apply", data={**form, "csrf_token": "forged", "gpus_per_job": "2"})
    assert forged.status_code == 403


def test_console_actions_are_authorised_in_the_service(exchange: Exchange) -> None:
    _world(exchange)
    rid = exchange.apply("under review", gpu_hours=2_000)["id"]
    client = exchange.client
    _login(client, "conflicted@test.example")
    page = client.get("/compute/reviews")
    assert f"request-{rid}" not in page.text  # never shown their own organisation's request
    refused = client.post(f"/compute/requests/{rid}/review", data={"csrf_token": csrf_of(page.text), "score": "9"})
    assert refused.status_code == 403 and "conflict of interest" in refused.text
    _login(client, "applicant@test.example")
    page = client.get("/compute/programmes/ccp")
    assert 'id="allocate"' not in page.text
    allocate = client.post("/compute/programmes/ccp/allocate", data={"csrf_token": csrf_of(page.text)})
    assert allocate.status_code == 403
    drill = client.post("/compute/cutoff", data={"csrf_token": csrf_of(page.text), "selector": "provider",
                                                 "value": "domestic"})
    assert drill.status_code == 403 and not any(o["withdrawn"] for o in exchange.get("/offers").json())
