"""HTTP API of the audit log: search, export as JSON Lines, verify the chain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from sovstack.core import audit
from sovstack.core.api.deps import PrincipalDep, SessionDep
from sovstack.core.schemas import AuditEventPublic, VerificationPublic

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


def audit_filter(actor: str | None = None, action: str | None = None, target: str | None = None,
                 outcome: str | None = Query(None, pattern="^(ok|refused|failed)$"),
                 since: datetime | None = None, until: datetime | None = None) -> audit.AuditFilter:
    return audit.AuditFilter(actor=actor, action=action, target=target, outcome=outcome, since=since, until=until)


FilterDep = Annotated[audit.AuditFilter, Depends(audit_filter)]


@router.get("/events")
def events(session: SessionDep, who: PrincipalDep, f: FilterDep, limit: int = Query(100, ge=1, le=1000),
           before: int | None = Query(None, ge=1)) -> list[AuditEventPublic]:
    who.require_admin("audit.read")
    return [AuditEventPublic(**audit.as_dict(e)) for e in audit.search(session, f, limit=limit, before=before)]


@router.get("/export")
def export(request: Request, who: PrincipalDep, f: FilterDep) -> StreamingResponse:
    who.require_admin("audit.export")

    def lines() -> Iterator[str]:
        # Its own session: the stream outlives the request's dependencies.
        with request.app.state.db.session() as session:
            yield from audit.export_lines(session, f)

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"content-disposition": 'attachment; filename="audit.jsonl"'})


@router.get("/verify")
def verify(session: SessionDep, who: PrincipalDep) -> VerificationPublic:
    who.require_admin("audit.verify")
    v = audit.verify(session)
    return VerificationPublic(ok=v.ok, checked=v.checked, first_bad_seq=v.first_bad_seq, problem=v.problem)
