"""The console's layout: one Jinja2 environment, the navigation, and page and error rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from sovstack.core.errors import SovstackError
from sovstack.core.plugins import ConsolePages, NavEntry
from sovstack.core.settings import Settings

TEMPLATES = Path(__file__).resolve().parent / "templates"
FLASH_MAX = 200

CORE_NAV = (
    NavEntry("Dashboard", "/", 0),
    NavEntry("Organisations", "/organisations", 10),
    NavEntry("Users", "/users", 20),
    NavEntry("Invitations", "/invitations", 25),
    NavEntry("API keys", "/keys", 30),
    NavEntry("Parties", "/parties", 40),
    NavEntry("Jurisdictions", "/jurisdictions", 50),
    NavEntry("Policy", "/policy", 60),
    NavEntry("Audit", "/audit", 70),
)


class Console:
    """Renders console pages for one app: templates of the core and of every module, one navigation."""

    def __init__(self, settings: Settings, pages: list[ConsolePages]) -> None:
        self.settings = settings
        folders = [str(TEMPLATES), *(str(p.templates) for p in pages if p.templates)]
        self.env = Environment(loader=FileSystemLoader(folders), autoescape=True, undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
        module_nav = [entry for p in pages for entry in p.nav]
        self.nav: tuple[NavEntry, ...] = tuple(sorted((*CORE_NAV, *module_nav), key=lambda e: e.order))
        self.module_nav: tuple[NavEntry, ...] = tuple(sorted(module_nav, key=lambda e: e.order))

    def context(self, request: Request) -> dict[str, Any]:
        """What every page sees: navigation, who is signed in, their CSRF token, the flash message."""
        signed_in = getattr(request.state, "signed_in", None)
        flash = request.query_params.get("ok", "")[:FLASH_MAX]
        return {
            "request": request,
            "nav": self.nav,
            "module_nav": self.module_nav,
            "current": _section(request.url.path, self.nav),
            "who": getattr(request.state, "principal", None),
            "user": signed_in,
            "csrf_token": signed_in.csrf_token if signed_in is not None else "",
            "deployment_name": self.settings.deployment_name,
            "flash": flash,
        }

    def render(self, request: Request, template: str, **context: Any) -> str:
        return self.env.get_template(template).render({**self.context(request), **context})

    def page(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """A full HTML page in the console layout."""
        return HTMLResponse(self.render(request, template, **context), status_code=status_code)

    def error_page(self, request: Request, exc: SovstackError) -> str:
        """A friendly page that says what went wrong and why."""
        return self.render(request, "error.html", error=exc, status=exc.status)


def _section(path: str, nav: tuple[NavEntry, ...]) -> str:
    """The nav path the current page belongs to (the longest matching prefix)."""
    best = "/"
    for entry in nav:
        if entry.path != "/" and (path == entry.path or path.startswith(entry.path.rstrip("/") + "/")):
            best = entry.path if len(entry.path) > len(best) else best
    return best
