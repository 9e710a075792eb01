"""Public probes: liveness, readiness (database reachable, migrations current) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from sovstack.core.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> Response:
    db = request.app.state.db
    try:
        db.ping()
        current, head = db.current_revision(), db.head_revision()
    except (Unavailable, SQLAlchemyError) as exc:
        return JSONResponse({"status": "unavailable", "database": str(exc)[:200]}, status_code=503)
    if current != head:
        return JSONResponse({"status": "unavailable", "database": "ok",
                             "migrations": f"at {current}, head is {head}: run `sovstack db upgrade`"},
                            status_code=503)
    return JSONResponse({"status": "ok", "database": db.dialect, "migrations": current})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
