"""The ASGI app factory: wires the core and every registered module; no import-time state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import BaseRoute

from sovstack import __version__
from sovstack.console import invitations as invitation_pages
from sovstack.console.render import Console
from sovstack.console.routes import router as console_router
from sovstack.console.static import mount_static
from sovstack.core.api import audit as audit_api
from sovstack.core.api import handlers, health
from sovstack.core.api import identity as identity_api
from sovstack.core.api import inventory as inventory_api
from sovstack.core.api import parties as parties_api
from sovstack.core.api import policy as policy_api
from sovstack.core.api.middleware import BodyLimit, Metrics, Observe
from sovstack.core.context import CORE_SCOPES
from sovstack.core.db import Database
from sovstack.core.plugins import ConsolePages, flatten, plugin_manager
from sovstack.core.settings import Settings

# Served without authentication (DESIGN.md §4); everything else needs a key or a session.
PUBLIC_PATHS = ("/healthz", "/readyz", "/login", "/static/")


def create_app(settings: Settings | None = None, plugins: Iterable[object] = ()) -> FastAPI:
    """A new app for one deployment; ``plugins`` adds hook implementations (tests, embedders)."""
    settings = settings or Settings()
    db = Database(settings)
    pm = plugin_manager(plugins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for pending in pm.hook.sovstack_app_startup(app=app):
            if pending is not None:
                await pending
        yield
        for pending in pm.hook.sovstack_app_shutdown(app=app):
            if pending is not None:
                await pending
        db.dispose()

    app = FastAPI(title="sovstack", version=__version__, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.db = db
    app.state.plugins = pm
    app.state.metrics = Metrics()
    app.state.scopes = tuple(dict.fromkeys([*CORE_SCOPES, *flatten(pm.hook.sovstack_scopes())]))
    app.state.public_paths = (*PUBLIC_PATHS, *flatten(pm.hook.sovstack_public_paths()))
    app.state.upload_routes = []  # POST path patterns that stream large bodies (plugins add theirs)

    for router in (health.router, identity_api.router, parties_api.router, policy_api.router, audit_api.router,
                   inventory_api.router):
        app.include_router(router)
    for router in flatten(pm.hook.sovstack_api_routers(settings=settings)):
        app.include_router(router)

    pages: list[ConsolePages] = [p for p in pm.hook.sovstack_console_pages(settings=settings) if p]
    app.state.console = Console(settings, pages)
    app.include_router(console_router)
    app.include_router(invitation_pages.router)
    for page in pages:
        app.include_router(page.router)
    mount_static(app)

    pm.hook.sovstack_app_created(app=app)
    handlers.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, uploads=app.state.upload_routes,
                       upload_max_bytes=settings.max_upload_bytes, gateway_max_bytes=settings.gateway_max_body_bytes)
    app.add_middleware(Observe, metrics=app.state.metrics, on_unexpected=handlers.on_unexpected)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes: settings from env and sovstack.toml."""
    return create_app(Settings())


def all_routes(app: FastAPI) -> list[BaseRoute]:
    """Every route the app serves, looking inside included routers (routers carry full paths here)."""
    found: list[BaseRoute] = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            pending.extend(inner.routes)
        else:
            found.append(route)
    return found
