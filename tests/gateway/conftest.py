"""Gateway fixtures: sovstack served in-process on 127.0.0.1, fault-injecting upstreams, a catalogue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from sovstack.core import parties
from sovstack.core.base import utcnow
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.schemas import PartyCreate
from sovstack.gateway import service
from sovstack.gateway.metering import window
from sovstack.gateway.schemas import Catalogue
from tests.conftest import free_port, make_key, make_user
from tests.gateway.anthropic_upstream import AnthropicUpstream
from tests.gateway.upstream import Upstream, serve

OPERATOR = Principal.system("test")
PARTIES = [
    ("Desi Cloud", ["compute_provider", "model_host"], "IN", "", None),
    ("Hyper India", ["compute_provider", "model_host"], "IN", "Hyper Inc", "US"),
    ("Bharat Models", ["model_developer"], "IN", "", None),
    ("Frontier Labs", ["model_developer"], "US", "", None),
]


@dataclass
class Gateway:
    url: str
    app: FastAPI
    db: Database
    key: str
    admin_key: str


@pytest.fixture
def upstreams() -> Iterator[Callable[[str], Upstream]]:
    started: list[Upstream] = []

    def make(name: str, mode: str = "ok", without: tuple[str, ...] = ()) -> Upstream:
        up = Upstream(name, mode, without=without)
        port = free_port()
        up.server = serve(up.app(), port)
        up.url = f"http://127.0.0.1:{port}/v1"
        started.append(up)
        return up

    yield make
    for up in started:
        assert up.server is not None
        up.server.should_exit = True


@pytest.fixture
def anthropic_upstreams() -> Iterator[Callable[[str], AnthropicUpstream]]:
    started: list[AnthropicUpstream] = []

    def make(name: str, mode: str = "ok") -> AnthropicUpstream:
        up = AnthropicUpstream(name, mode)
        port = free_port()
        up.server = serve(up.app(), port)
        up.url = f"http://127.0.0.1:{port}/v1"
        started.append(up)
        return up

    yield make
    for up in started:
        assert up.server is not None
        up.server.should_exit = True


@pytest.fixture
def gateway(app: FastAPI, db: Database) -> Iterator[Gateway]:
    with db.session() as s, unit_of_work(s, OPERATOR):
        for name, kinds, jur, parent, parent_jur in PARTIES:
            parties.create_party(s, OPERATOR, PartyCreate(name=name, kinds=kinds, jurisdiction=jur,
                                                          ultimate_parent=parent, parent_jurisdiction=parent_jur))
    user = make_user(db, "dev@test.example")
    admin = make_user(db, "gw-admin@test.example", admin=True)
    port = free_port()
    server = serve(app, port)
    yield Gateway(f"http://127.0.0.1:{port}", app, db, make_key(db, user["id"], ["read", "gateway"]),
                  make_key(db, admin["id"], ["read", "write", "admin", "gateway"]))
    server.should_exit = True


def fresh_minute(margin: int = 5) -> None:
    """Wait out the end of a rate-limit window, so a burst falls in one window."""
    _, reset = window("minute", utcnow())
    if reset <= margin:
        time.sleep(reset)


def deployment(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": url, "upstream_model": f"up-{name}", "hosting_jurisdiction": "IN",
            "operator": "Desi Cloud", "developer": "Bharat Models", "licence": "Apache-2.0", "open_weights": True,
            "timeout_seconds": 2.0, **extra}


def register(db: Database, model: str, *deployments: dict[str, Any], language_routing: bool = False) -> None:
    with db.session() as s, unit_of_work(s, OPERATOR):
        service.apply_catalogue(s, OPERATOR, db.settings, Catalogue.model_validate({"models": [
            {"name": model, "language_routing": language_routing, "deployments": list(deployments)}]}))
