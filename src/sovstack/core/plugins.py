"""Hook specifications: how a module plugs its routes, commands, pages, demo and inventory in.

Our own domain modules are plugins of these hooks, listed in ``DEFAULT_PLUGINS``; a third
party's package adds itself through the ``sovstack`` entry-point group. Core never imports a
domain module by name anywhere else.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter, FastAPI
    from sqlalchemy.orm import Session

    from sovstack.core.settings import Settings

hookspec = pluggy.HookspecMarker("sovstack")
hookimpl = pluggy.HookimplMarker("sovstack")

# Modules that ship with sovstack, each a plugin like any other (Datasette's DEFAULT_PLUGINS).
DEFAULT_PLUGINS: tuple[str, ...] = ("sovstack.gateway.plugin", "sovstack.data.plugin", "sovstack.compute.plugin",
                                   "sovstack.assess.plugin", "sovstack.portability.plugin")


@dataclass(frozen=True)
class NavEntry:
    """A link in the console's navigation."""

    label: str
    path: str
    order: int = 100


@dataclass(frozen=True)
class ConsolePages:
    """A module's console: its router (mounted at the root), nav entries and template folder."""

    router: APIRouter
    nav: tuple[NavEntry, ...] = ()
    templates: Path | None = None


@dataclass(frozen=True)
class InventoryItem:
    """One component a module manages, described for the sovereignty assessor."""

    module: str
    kind: str
    name: str
    layer: str
    parties: tuple[str, ...] = ()
    jurisdiction: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoContext:
    """What the core demo created, for modules to build on; ``say`` prints a line for the user."""

    settings: Settings
    organisations: dict[str, int]
    users: dict[str, int]
    parties: dict[str, int]
    say: Callable[[str], None]

    @property
    def home(self) -> str:
        return self.settings.home_jurisdiction


class Hooks:
    """The hook specifications (one line of docstring each says what the hook promises)."""

    @hookspec
    def sovstack_api_routers(self, settings: Settings) -> list[APIRouter]:  # type: ignore[empty-body]
        """Routers to mount as they are (by convention under /api/v1/<module>); all need auth."""

    @hookspec
    def sovstack_cli(self, app: typer.Typer) -> None:
        """Add the module's Typer sub-app to the root CLI."""

    @hookspec
    def sovstack_console_pages(self, settings: Settings) -> ConsolePages | None:
        """Console routes, nav entries and templates of the module."""

    @hookspec
    def sovstack_scopes(self) -> list[str]:  # type: ignore[empty-body]
        """API-key scopes the module checks, beyond read/write/admin."""

    @hookspec
    def sovstack_public_paths(self) -> list[str]:  # type: ignore[empty-body]
        """Path prefixes the module serves without authentication (justify each in DESIGN.md)."""

    @hookspec
    def sovstack_demo(self, session: Session, ctx: DemoContext) -> None:
        """Seed clearly synthetic demo content; called after the core demo, in one transaction."""

    @hookspec
    def sovstack_inventory(self, session: Session) -> list[InventoryItem]:  # type: ignore[empty-body]
        """The components the module manages right now (providers, models, datasets…)."""

    @hookspec
    def sovstack_after_import(self, session: Session) -> None:
        """Rebuild what the module derives from its tables (search indexes) after a whole-deployment import."""

    @hookspec
    def sovstack_app_created(self, app: FastAPI) -> None:
        """Attach the module's per-app state (clients, caches) to ``app.state``; no globals."""

    @hookspec
    def sovstack_app_startup(self, app: FastAPI) -> Awaitable[None] | None:
        """Housekeeping when the app starts serving (what a killed process left behind); may return an awaitable."""

    @hookspec
    def sovstack_app_shutdown(self, app: FastAPI) -> Awaitable[None] | None:
        """Release what ``sovstack_app_created`` attached; may return an awaitable."""


def plugin_manager(extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """A fresh plugin manager with the default plugins, installed entry points and ``extra``."""
    pm = pluggy.PluginManager("sovstack")
    pm.add_hookspecs(Hooks)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    pm.load_setuptools_entrypoints("sovstack")
    for plugin in extra:
        pm.register(plugin)
    return pm


def flatten(results: Iterable[Iterable[Any] | None]) -> list[Any]:
    """Join the lists that the implementations of one hook returned."""
    return [item for result in results if result for item in result]
