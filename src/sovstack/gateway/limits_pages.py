"""Console page of the gateway's organisation limits: what binds every call made for an organisation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from sovstack.console.auth import ConsolePoster, ConsoleUser
from sovstack.console.routes import console_of, parse, see_other
from sovstack.core import identity, policy
from sovstack.core.api.deps import SessionDep
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.errors import BadInput, NotFound, Refused, SovstackError
from sovstack.gateway import budgets, service, stored
from sovstack.gateway.schemas import OrgLoggingSet, OrgPolicySet, OrgResponsesSet

router = APIRouter(include_in_schema=False)
FormStr = Annotated[str, Form()]
FormErrors = (BadInput, Refused, NotFound)


def limits_page(request: Request, session: Session, who: Principal, *, error: SovstackError | None = None,
                form: dict[str, str] | None = None, form_org: int | None = None) -> HTMLResponse:
    rows = service.org_policies(session, who)
    keys = [service.key_policy(session, who, k.prefix) for k in identity.list_api_keys(session, who)
            if not k.revoked_at] if who.user_id is not None else []
    return console_of(request).page(
        request, "gateway_limits.html", error.status if error else 200, rows=rows, levels=policy.LEVELS,
        budgets=budgets.status(session, who, request.app.state.gateway.counters), keys=keys,
        alerts=budgets.alerts(session, who, 20),
        manages={r.organisation_id for r in rows if who.has_role(r.organisation_id, "org_admin")},
        error=error, form=form or {}, form_org=form_org)


@router.get("/gateway/limits")
def limits(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    return limits_page(request, session, user[1])


def _optional(value: str) -> str | None:
    return value.strip() or None


def save(session: Session, who: Principal, org_id: int, form: dict[str, str]) -> None:
    """Parse the form and set the organisation's policy and, where they changed, its transcript logging and
    stored responses."""
    data = parse(OrgPolicySet, floor_classification=form["floor_classification"],
                 requests_per_minute_per_person=_optional(form["requests_per_minute_per_person"]),
                 tokens_per_person=_optional(form["tokens_per_person"]), tokens_period=form["tokens_period"])
    logging = parse(OrgLoggingSet, enabled=bool(form["transcripts"]), retention_days=form["retention_days"] or 30)
    kept = parse(OrgResponsesSet, enabled=bool(form["stored_responses"]),
                 retention_days=form["responses_retention_days"] or 30)
    with unit_of_work(session, who):
        current = service.org_policy(session, who, org_id)
        service.set_org_policy(session, who, org_id, data)
        if (current.transcripts_kept, current.retention_days) != (logging.enabled, logging.retention_days
                                                                   if logging.enabled else None):
            service.set_org_logging(session, who, org_id, logging)
        if (current.responses_kept, current.responses_retention_days) != (
                kept.enabled, kept.retention_days if kept.enabled else None):
            stored.set_org_responses(session, who, org_id, kept)


@router.post("/gateway/limits/{org_id}")
def set_limits(request: Request, org_id: int, session: SessionDep, user: ConsolePoster,
               floor_classification: FormStr = "open", requests_per_minute_per_person: FormStr = "",
               tokens_per_person: FormStr = "", tokens_period: FormStr = "month", transcripts: FormStr = "",
               retention_days: FormStr = "", stored_responses: FormStr = "",
               responses_retention_days: FormStr = "") -> Response:
    form = {"floor_classification": floor_classification, "requests_per_minute_per_person":
            requests_per_minute_per_person, "tokens_per_person": tokens_per_person, "tokens_period": tokens_period,
            "transcripts": transcripts, "retention_days": retention_days, "stored_responses": stored_responses,
            "responses_retention_days": responses_retention_days}
    try:
        save(session, user[1], org_id, form)
    except FormErrors as exc:
        return limits_page(request, session, user[1], error=exc, form=form, form_org=org_id)
    return see_other("/gateway/limits", "Limits saved: they bind every key of the organisation's members.")
