"""Console pages of the data commons: the catalogue with search and facets, a dataset's page, the
steward's inbox, and the member's grants and requests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from sovstack.console.auth import ConsolePoster, ConsoleUser
from sovstack.console.routes import console_of, parse, see_other
from sovstack.core import identity
from sovstack.core.api.deps import SessionDep, SettingsDep
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused, SovstackError
from sovstack.core.plugins import ConsolePages, NavEntry
from sovstack.core.settings import Settings
from sovstack.data import access, search, service
from sovstack.data.api import grant_public, request_public
from sovstack.data.schemas import AccessRequestCreate, RequestDecision

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).resolve().parent / "templates"
FormStr = Annotated[str, Form()]
FormErrors = (BadInput, Refused, NotFound, Conflict)


def console_pages() -> ConsolePages:
    return ConsolePages(router, nav=(NavEntry("Datasets", "/data", 80), NavEntry("Inbox", "/data/inbox", 81),
                                     NavEntry("My access", "/data/access", 82)), templates=TEMPLATES)


@router.get("/data")
def catalogue(request: Request, session: SessionDep, user: ConsoleUser, q: str = "", publisher: str = "",
              classification: str = "", language: str = "", licence: str = "", format: str = "",  # noqa: A002
              page: int = 1) -> HTMLResponse:
    chosen = {"publisher": publisher, "classification": classification, "language": language, "licence": licence,
              "format": format}
    filters = search.Filters(**{k: v or None for k, v in chosen.items()})
    size, page = 20, max(page, 1)
    found = search.find(session, q, filters, anonymous=False, limit=size, offset=(page - 1) * size)
    links = {facet: {value: _with(q, chosen, facet, value) for value in counts}
             for facet, counts in found.facets.items()}
    return console_of(request).page(
        request, "data_catalogue.html", q=q, chosen=chosen, found=found, links=links,
        datasets=[service.public(d) for d in found.datasets], page=page, pages=max(1, -(-found.total // size)),
        clear={facet: _with(q, chosen, facet, "") for facet in chosen})


def _with(q: str, chosen: dict[str, str], facet: str, value: str) -> str:
    params = {k: v for k, v in {**chosen, facet: value, "q": q}.items() if v}
    return "/data" + (f"?{urlencode(params)}" if params else "")


def dataset_page(request: Request, session: Session, settings: Settings, who: Principal, name: str, *,
                 error: SovstackError | None = None, status: int = 200) -> HTMLResponse:
    dataset = service.get_visible(session, who, name)
    steward = who.has_role(dataset.publisher_id, *service.STEWARDS)
    grants = [grant_public(g) for g in access.grants_of(session, who, name)] if steward else []
    mine = access.live_grant(session, who.user_id, dataset.id, "download", "sandbox")
    return console_of(request).page(
        request, "data_dataset.html", status if not error else error.status, d=service.public(dataset),
        versions=[service.version_public(v) for v in reversed(dataset.versions)], steward=steward,
        grants=grants, my_grant=grant_public(mine) if mine else None, error=error,
        mode=access.grant_mode(session, settings, dataset), orgs=_orgs(session, who))


def _orgs(session: Session, who: Principal) -> list[tuple[int, str]]:
    return [(org_id, identity.get_organisation(session, org_id).name) for org_id in sorted(who.roles)]


@router.get("/data/datasets/{name}")
def dataset(request: Request, name: str, session: SessionDep, settings: SettingsDep, user: ConsoleUser) -> HTMLResponse:
    return dataset_page(request, session, settings, user[1], name)


@router.post("/data/datasets/{name}/request")
def ask(request: Request, name: str, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
        purpose: FormStr = "", days: FormStr = "90", organisation_id: FormStr = "") -> Response:
    who = user[1]
    try:
        data = parse(AccessRequestCreate, purpose=purpose, days=days, organisation_id=organisation_id or None)
        with unit_of_work(session, who):
            access.request_access(session, who, settings, name, data)
    except FormErrors as exc:
        return dataset_page(request, session, settings, who, name, error=exc)
    return see_other(f"/data/datasets/{name}", "Access requested: a steward of the publisher will decide.")


@router.post("/data/grants/{grant_id}/revoke")
def revoke(grant_id: int, session: SessionDep, user: ConsolePoster, dataset: FormStr = "",
           reason: FormStr = "") -> Response:
    with unit_of_work(session, user[1]):
        access.revoke(session, user[1], grant_id, reason.strip() or "revoked in the console")
    return see_other(f"/data/datasets/{dataset}" if dataset else "/data", f"Grant {grant_id} revoked.")


def inbox_page(request: Request, session: Session, settings: Settings, who: Principal,
               error: SovstackError | None = None) -> HTMLResponse:
    rows = [request_public(r, identity.get_user(session, r.user_id).email, late)
            for r, late in access.inbox(session, who, settings)]
    return console_of(request).page(request, "data_inbox.html", error.status if error else 200, requests=rows,
                                    error=error, sla=settings.data_request_sla_hours)


@router.get("/data/inbox")
def inbox(request: Request, session: SessionDep, settings: SettingsDep, user: ConsoleUser) -> HTMLResponse:
    return inbox_page(request, session, settings, user[1])


@router.post("/data/requests/{request_id}/decide")
def decide(request: Request, request_id: int, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
           decision: FormStr = "", reason: FormStr = "", days: FormStr = "") -> Response:
    who = user[1]
    try:
        data = parse(RequestDecision, approve=decision == "approve", reason=reason, days=days or None)
        with unit_of_work(session, who):
            req, grant = access.decide(session, who, settings, request_id, data)
    except FormErrors as exc:
        return inbox_page(request, session, settings, who, exc)
    done = f"approved: grant {grant.id} ({grant.mode})" if grant else "rejected"
    return see_other("/data/inbox", f"Request {req.id} {done}.")


@router.get("/data/access")
def my_access(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    who = user[1]
    return console_of(request).page(
        request, "data_access.html", grants=[grant_public(g) for g in access.my_grants(session, who)],
        requests=[request_public(r, who.email) for r in access.my_requests(session, who)])
