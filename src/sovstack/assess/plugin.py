"""The sovereignty assessor as a sovstack plugin: CLI, API, console pages, demo and the deployment's own inventory."""

from __future__ import annotations

import typer
from fastapi import APIRouter
from sqlalchemy.orm import Session

from sovstack.assess import demo, live, pages
from sovstack.assess.api import router
from sovstack.assess.cli import assess_app
from sovstack.core.plugins import ConsolePages, DemoContext, InventoryItem, hookimpl
from sovstack.core.settings import Settings


@hookimpl
def sovstack_cli(app: typer.Typer) -> None:
    app.add_typer(assess_app, name="assess")


@hookimpl
def sovstack_api_routers(settings: Settings) -> list[APIRouter]:
    return [router]


@hookimpl
def sovstack_console_pages(settings: Settings) -> ConsolePages:
    return pages.console_pages()


@hookimpl
def sovstack_inventory(session: Session) -> list[InventoryItem]:
    """The deployment itself and its database: no other module manages them, so the assessor says them."""
    return live.deployment_items(session)


@hookimpl(trylast=True)
def sovstack_demo(session: Session, ctx: DemoContext) -> None:
    """Last of the demos, so the scorecard covers what the other modules seeded."""
    demo.report(session, ctx)
