"""Static assets of the console, served from the package itself: no CDN, works air-gapped."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def mount_static(app: FastAPI) -> None:
    """Serve ``console/static/`` at ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
