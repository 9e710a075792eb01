"""The data commons as a sovstack plugin: routes, CLI, upload route, demo and inventory."""

from __future__ import annotations

import typer
from fastapi import APIRouter, FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.core.plugins import ConsolePages, DemoContext, InventoryItem, hookimpl
from sovstack.core.settings import Settings
from sovstack.data import demo, pages, search, service
from sovstack.data.api import UPLOAD_ROUTE, router
from sovstack.data.cli import data_app
from sovstack.data.tables import Dataset


@hookimpl
def sovstack_api_routers(settings: Settings) -> list[APIRouter]:
    return [router]


@hookimpl
def sovstack_cli(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@hookimpl
def sovstack_console_pages(settings: Settings) -> ConsolePages:
    return pages.console_pages()


@hookimpl
def sovstack_app_created(app: FastAPI) -> None:
    app.state.upload_routes.extend([UPLOAD_ROUTE, pages.PUBLISH_ROUTE])


@hookimpl
def sovstack_app_startup(app: FastAPI) -> None:
    service.clean_staging(app.state.settings)


@hookimpl
def sovstack_demo(session: Session, ctx: DemoContext) -> None:
    demo.seed(session, ctx)


@hookimpl
def sovstack_after_import(session: Session) -> None:
    search.reindex_all(session)


@hookimpl
def sovstack_inventory(session: Session) -> list[InventoryItem]:
    return [InventoryItem(module="data", kind="dataset", name=d.name, layer="data", parties=(d.publisher.name,),
                          jurisdiction=d.storage_jurisdiction,
                          detail={"classification": d.classification, "licence": d.licence,
                                  "languages": list(d.languages), "versions": d.current_version})
            for d in session.scalars(select(Dataset).order_by(Dataset.name))]
