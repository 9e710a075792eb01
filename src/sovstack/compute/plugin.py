"""The compute exchange as a sovstack plugin: routes, CLI, console pages, scopes, demo and inventory."""

from __future__ import annotations

import typer
from fastapi import APIRouter
from sqlalchemy.orm import Session

from sovstack.compute import demo, pages, providers
from sovstack.compute.api import router
from sovstack.compute.cli import compute_app
from sovstack.core.plugins import ConsolePages, DemoContext, InventoryItem, hookimpl
from sovstack.core.settings import Settings


@hookimpl
def sovstack_api_routers(settings: Settings) -> list[APIRouter]:
    return [router]


@hookimpl
def sovstack_cli(app: typer.Typer) -> None:
    app.add_typer(compute_app, name="compute")


@hookimpl
def sovstack_console_pages(settings: Settings) -> ConsolePages:
    return pages.console_pages()


@hookimpl
def sovstack_scopes() -> list[str]:
    return ["compute.report"]


@hookimpl
def sovstack_demo(session: Session, ctx: DemoContext) -> None:
    demo.seed(session, ctx)


@hookimpl
def sovstack_inventory(session: Session) -> list[InventoryItem]:
    """Each provider (compute layer) and each accelerator type it offers (chips layer)."""
    items: list[InventoryItem] = []
    for p in providers.list_providers(session):
        live = [o for o in p.offers if o.withdrawn_by is None]
        items.append(InventoryItem(
            module="compute", kind="compute_provider", name=p.name, layer="compute", parties=(p.party.name,),
            jurisdiction=p.datacentre_jurisdiction,
            detail={"control_plane_jurisdiction": p.control_plane_jurisdiction, "corporate_group": p.corporate_group,
                    "parent_jurisdiction": p.party.parent_jurisdiction,
                    "delivered_gpus": sum(o.gpu_count for o in live if o.delivery == "delivered"),
                    "gpu_types": sorted({o.gpu_type for o in live}), "delivery": "service"}))
        for gpu, vendor in sorted({(o.gpu_type, o.chip_vendor) for o in live}):
            items.append(InventoryItem(
                module="compute", kind="accelerator", name=f"{gpu} at {p.name}", layer="chips",
                # (operator, supplier): the provider runs the installed GPUs the chip vendor made
                parties=(p.party.name, vendor), jurisdiction=p.datacentre_jurisdiction,
                detail={"chip_vendor": vendor, "gpu_type": gpu, "provider": p.name, "delivery": "installed",
                        "gpus": sum(o.gpu_count for o in live if o.gpu_type == gpu)}))
    return items
