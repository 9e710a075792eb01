"""The gateway as a sovstack plugin: routes, scopes, CLI, per-app state, demo and inventory."""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import typer
from fastapi import APIRouter, FastAPI
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from sovstack.core.api import handlers
from sovstack.core.api.middleware import Direct
from sovstack.core.plugins import ConsolePages, DemoContext, InventoryItem, hookimpl
from sovstack.core.settings import Settings
from sovstack.gateway import cache, demo, http1, pages, service, stored
from sovstack.gateway.api import (
    chat_completions,
    completions,
    create_response,
    embeddings,
    messages,
    openai_router,
    router,
)
from sovstack.gateway.circuits import CircuitReporter
from sovstack.gateway.cli import gateway_app
from sovstack.gateway.language import Detector
from sovstack.gateway.metering import counters_for
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


@hookimpl
def sovstack_app_created(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    counters = counters_for(settings)
    # The /v1 calls authenticate themselves; serve them without the router's dispatch (hot path).
    app.add_middleware(Direct, routes={("POST", "/v1/chat/completions"): chat_completions,
                                       ("POST", "/v1/responses"): create_response,
                                       ("POST", "/v1/embeddings"): embeddings,
                                       ("POST", "/v1/completions"): completions,
                                       ("POST", "/v1/messages"): messages}, on_error=handlers.respond_to,
                   handled=handlers.EXPECTED)
    # Circuit transitions are written for other processes to read (gateway/circuits.py), never per request.
    app.state.circuits = CircuitReporter(app.state.db)
    breakers = Breakers(observer=app.state.circuits)
    telemetry = Telemetry(GatewayMetrics(app.state.metrics, breakers),
                          tracer_for(settings.otel_endpoint, settings.deployment_name))
    app.state.gateway = GatewayState(client=http1.Client(), probe=httpx.AsyncClient(limits=PROBE_LIMITS),
                                     breakers=breakers,
                                     counters=counters, detector=Detector(),
                                     writer=MeterWriter(app.state.db), telemetry=telemetry,
                                     sealer=stored.Sealer(settings),
                                     answers=cache.AnswerCache(settings, cache.store_for(settings, app.state.db)))


@hookimpl
def sovstack_app_shutdown(app: FastAPI) -> Awaitable[None] | None:
    state: GatewayState | None = getattr(app.state, "gateway", None)
    return _close(state, getattr(app.state, "circuits", None)) if state else None


async def _close(state: GatewayState, circuits: CircuitReporter | None) -> None:
    await state.writer.aclose()
    await state.client.aclose()
    await state.probe.aclose()
    state.telemetry.close()  # the spans still batched are exported before the process ends
    if circuits is not None:
        await run_in_threadpool(circuits.close)  # the last transitions are written before the process ends


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
                    "withdrawn": dep.withdrawn, "enabled": dep.enabled,
                    "developer_jurisdiction": dep.developer.jurisdiction,
                    "operator_parent_jurisdiction": dep.operator.parent_jurisdiction}))
    return items
