"""A module plugs in through the hooks alone: routes, CLI, console pages, scopes, demo, inventory."""

from __future__ import annotations

from typing import Any

import typer
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from sovstack.app import create_app
from sovstack.cli import run
from sovstack.core.api.deps import PrincipalDep, require_scope
from sovstack.core.plugins import ConsolePages, DemoContext, InventoryItem, NavEntry, hookimpl, plugin_manager
from sovstack.core.settings import Settings
from tests.conftest import make_key, make_user


class ExamplePlugin:
    """What a third-party module looks like: no edit to core needed."""

    seeded: list[DemoContext] = []

    @hookimpl
    def sovstack_api_routers(self, settings: Settings) -> list[APIRouter]:
        router = APIRouter(prefix="/api/v1/example")

        @router.get("/hello", dependencies=[require_scope("example")])
        def hello(who: PrincipalDep) -> dict[str, str]:
            return {"hello": who.email}

        return [router]

    @hookimpl
    def sovstack_scopes(self) -> list[str]:
        return ["example"]

    @hookimpl
    def sovstack_cli(self, app: typer.Typer) -> None:
        sub = typer.Typer()

        @sub.command("ping")
        def ping() -> None:
            typer.echo("pong")

        app.add_typer(sub, name="example")

    @hookimpl
    def sovstack_console_pages(self, settings: Settings) -> ConsolePages:
        router = APIRouter(include_in_schema=False)

        @router.get("/example")
        def page(who: PrincipalDep) -> HTMLResponse:
            return HTMLResponse("<p>example</p>")

        return ConsolePages(router=router, nav=(NavEntry("Example", "/example", 50),))

    @hookimpl
    def sovstack_demo(self, session: Session, ctx: DemoContext) -> None:
        self.seeded.append(ctx)

    @hookimpl
    def sovstack_inventory(self, session: Session) -> list[InventoryItem]:
        return [InventoryItem(module="example", kind="model", name="Tiny-1", layer="models",
                              parties=("Example Labs",), jurisdiction="IN")]


def test_plugin_routes_scopes_and_inventory(settings: Settings) -> None:
    app = create_app(settings, plugins=[ExamplePlugin()])
    db = app.state.db
    user = make_user(db, "u@test.example")
    with TestClient(app) as client:
        plain = {"Authorization": f"Bearer {make_key(db, user['id'])}"}
        r = client.get("/api/v1/example/hello", headers=plain)
        assert r.status_code == 403 and "example scope" in r.json()["error"]["message"]
        scoped = {"Authorization": f"Bearer {make_key(db, user['id'], ['read', 'example'])}"}
        assert client.get("/api/v1/example/hello", headers=scoped).json() == {"hello": "u@test.example"}
        assert client.get("/api/v1/example/hello").status_code == 401
        inv = [i for i in client.get("/api/v1/inventory", headers=plain).json() if i["module"] == "example"]
        assert inv == [{"module": "example", "kind": "model", "name": "Tiny-1", "layer": "models",
                        "parties": ["Example Labs"], "jurisdiction": "IN", "detail": {}}]
        assert client.get("/example", follow_redirects=False).status_code == 303
    assert any(e.label == "Example" for e in app.state.console.nav)


def test_plugin_cli_and_demo(settings: Settings, capsys: Any) -> None:
    plugin = ExamplePlugin()
    pm = plugin_manager([plugin])
    assert run(["--home", str(settings.home), "example", "ping"], pm) == 0
    assert capsys.readouterr().out.strip() == "pong"
    assert run(["--home", str(settings.home), "inventory", "--json"], pm) == 0
    assert '"name": "Tiny-1"' in capsys.readouterr().out
    assert run(["--home", str(settings.home), "demo", "--no-serve"], pm) == 0
    ctx = plugin.seeded[-1]
    assert set(ctx.users) >= {"admin", "steward", "reviewer", "member"} and ctx.parties
