"""With anonymous browsing on, visitors see and download open data only; with it off, nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sovstack.app import create_app
from sovstack.core.settings import Settings
from sovstack.core.tables import AuditEvent
from tests.data.conftest import Commons


@pytest.fixture
def visitor(commons: Commons, settings: Settings) -> Iterator[TestClient]:
    commons.create("open_rain", description="Rainfall (synthetic)")
    assert commons.publish("open_rain").status_code == 201
    commons.create("closed_costs", classification="restricted", description="Costs (synthetic)")
    assert commons.publish("closed_costs").status_code == 201
    app = create_app(settings.model_copy(update={"anonymous_browsing": True}))
    with TestClient(app) as client:
        yield client
    app.state.db.dispose()


def test_visitors_browse_search_and_download_open_data_only(visitor: TestClient, commons: Commons) -> None:
    found = visitor.get("/api/v1/data/datasets").json()
    assert [d["name"] for d in found["datasets"]] == ["open_rain"] and found["facets"]["classification"] == {
        "open": 1}
    assert visitor.get("/api/v1/data/datasets/open_rain").status_code == 200
    assert visitor.get("/api/v1/data/datasets/closed_costs").status_code == 404  # not even its existence
    assert visitor.get("/api/v1/data/datasets/open_rain/download").content[:4] == b"PAR1"
    assert visitor.get("/api/v1/data/datasets/closed_costs/download").status_code == 404
    catalogue = visitor.get("/api/v1/data/catalogue.jsonld").json()
    assert [d["dct:identifier"] for d in catalogue["dcat:dataset"]] == ["open_rain"]
    assert visitor.post("/api/v1/data/sandbox/queries", json={"sql": "SELECT 1"}).status_code == 401
    with commons.db.session() as s:
        actors = s.scalars(select(AuditEvent.actor).where(AuditEvent.action == "data.download")).all()
    assert actors == ["anonymous"]

    page = visitor.get("/data")
    assert page.status_code == 200 and "open_rain" in page.text and "closed_costs" not in page.text
    page = visitor.get("/data/datasets/open_rain")
    assert "Log in" in page.text or "Download" in page.text
    assert visitor.get("/data/datasets/closed_costs").status_code == 404
    assert visitor.get("/data/inbox", follow_redirects=False).status_code == 303  # the rest needs a login


def test_without_anonymous_browsing_visitors_get_nothing(commons: Commons) -> None:
    commons.create("open_rain")
    assert commons.client.get("/api/v1/data/datasets").status_code == 401
    assert commons.client.get("/api/v1/data/datasets/open_rain/download").status_code == 401
    assert commons.client.get("/data", follow_redirects=False).status_code == 303
