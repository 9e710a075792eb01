"""Public probes: liveness, readiness (database reachable, migrations current) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from sovstack.core.api.deps import PrincipalDep
from sovstack.core.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get("/api/v1/openapi.json", include_in_schema=False)
def openapi(request: Request, who: PrincipalDep) -> dict[str, Any]:
    """The OpenAPI description of every route this deployment serves (needs authentication)."""
    schema: dict[str, Any] = request.app.openapi()
    return schema


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
def metrics(request: Request, who: PrincipalDep) -> Response:
    """Prometheus metrics; scrape with an admin key (``authorization: credentials: sk-…``)."""
    who.require_admin("metrics.read")
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
