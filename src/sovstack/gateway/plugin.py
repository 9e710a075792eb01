"""The gateway as a sovstack plugin: routes, scopes, CLI, per-app state, demo and inventory."""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import typer
from fastapi import APIRouter, FastAPI
from sqlalchemy.orm import Session

from sovstack.core.api import handlers
from sovstack.core.api.middleware import Direct
from sovstack.core.plugins import ConsolePages, DemoContext, InventoryItem, hookimpl
from sovstack.core.settings import Settings
from sovstack.gateway import demo, http1, pages, service
from sovstack.gateway.api import chat_completions, embeddings, openai_router, router
from sovstack.gateway.cli import gateway_app
from sovstack.gateway.language import Detector
from sovstack.gateway.metering import Counters, DatabaseCounters, RedisCounters
from sovstack.gateway.proxy import GatewayState
from sovstack.gateway.routing import Breakers
from sovstack.gateway.telemetry import GatewayMetrics, Telemetry, tracer_for
from sovstack.gateway.writer import MeterWriter

PROBE_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=0)


@hookimpl
def sovstack_api_routers(settings: Settings) -> list[APIRouter]:
    return [openai_router, router]


@hookimpl
def sovstack_scopes() -> list[str]:
    return ["gateway"]


@hookimpl
def sovstack_console_pages(settings: Settings) -> ConsolePages:
    return pages.console_pages()


@hookimpl
def sovstack_cli(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")


def _counters(settings: Settings) -> Counters:
    if settings.redis_url:
        import redis

        return RedisCounters(redis.Redis.from_url(settings.redis_url))
    return DatabaseCounters()


@hookimpl
def sovstack_app_created(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    counters = _counters(settings)
    # The /v1 calls authenticate themselves; serve them without the router's dispatch (hot path).
    app.add_middleware(Direct, routes={("POST", "/v1/chat/completions"): chat_completions,
                                       ("POST", "/v1/embeddings"): embeddings}, on_error=handlers.respond_to,
                   handled=handlers.EXPECTED)
    breakers = Breakers()
    telemetry = Telemetry(GatewayMetrics(app.state.metrics, breakers),
                          tracer_for(settings.otel_endpoint, settings.deployment_name))
    app.state.gateway = GatewayState(client=http1.Client(), probe=httpx.AsyncClient(limits=PROBE_LIMITS),
                                     breakers=breakers,
                                     counters=counters, detector=Detector(),
                                     writer=MeterWriter(app.state.db), telemetry=telemetry)


@hookimpl
def sovstack_app_shutdown(app: FastAPI) -> Awaitable[None] | None:
    state: GatewayState | None = getattr(app.state, "gateway", None)
    return _close(state) if state else None


async def _close(state: GatewayState) -> None:
    await state.writer.aclose()
    await state.client.aclose()
    await state.probe.aclose()
    state.telemetry.close()  # the spans still batched are exported before the process ends


@hookimpl
def sovstack_demo(session: Session, ctx: DemoContext) -> None:
    demo.seed(session, ctx)


@hookimpl
def sovstack_inventory(session: Session) -> list[InventoryItem]:
    items = []
    for dep in service.list_deployments(session):
        items.append(InventoryItem(
            module="gateway", kind="model_deployment", name=dep.name, layer="models",
            parties=(dep.operator.name, dep.developer.name), jurisdiction=dep.hosting_jurisdiction,
            detail={"model": dep.model.name, "licence": dep.licence, "open_weights": dep.open_weights,
                    "withdrawn": dep.withdrawn, "developer_jurisdiction": dep.developer.jurisdiction,
                    "operator_parent_jurisdiction": dep.operator.parent_jurisdiction}))
    return items
