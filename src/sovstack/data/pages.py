"""Console pages of the data commons: the catalogue with search and facets, a dataset's page, the
steward's inbox, and the member's grants and requests."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload

from sovstack.console.auth import ConsolePoster, ConsoleUser, ConsoleVisitor, check_csrf
from sovstack.console.routes import console_of, countries, parse, see_other
from sovstack.core import identity
from sovstack.core.api.deps import SessionDep, SettingsDep
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused, SovstackError
from sovstack.core.plugins import ConsolePages, NavEntry
from sovstack.core.settings import Settings
from sovstack.data import access, airlock, ingest, queries, search, service
from sovstack.data.api import grant_public, request_public
from sovstack.data.sandbox import Limits
from sovstack.data.schemas import (
    AccessRequestCreate,
    AirlockDecision,
    AirlockSubmit,
    DatasetCreate,
    RequestDecision,
    SandboxQueryCreate,
)
from sovstack.data.service import STEWARDS as STEWARD_ROLES

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).resolve().parent / "templates"
FormStr = Annotated[str, Form()]
FormErrors = (BadInput, Refused, NotFound, Conflict)


def console_pages() -> ConsolePages:
    return ConsolePages(router, nav=(NavEntry("Datasets", "/data", 80), NavEntry("Sandbox", "/data/sandbox", 81),
                                     NavEntry("Airlock", "/data/airlock", 82), NavEntry("Inbox", "/data/inbox", 83),
                                     NavEntry("My access", "/data/access", 84)),
                        templates=TEMPLATES)


@router.get("/data")
def catalogue(request: Request, session: SessionDep, who: ConsoleVisitor, q: str = "", publisher: str = "",
              classification: str = "", language: str = "", licence: str = "", format: str = "",  # noqa: A002
              page: int = 1) -> HTMLResponse:
    chosen = {"publisher": publisher, "classification": classification, "language": language, "licence": licence,
              "format": format}
    filters = search.Filters(**{k: v or None for k, v in chosen.items()})
    size, page = 20, max(page, 1)
    found = search.find(session, q, filters, anonymous=who is None, limit=size, offset=(page - 1) * size)
    links = {facet: {value: _with(q, chosen, facet, value) for value in counts}
             for facet, counts in found.facets.items()}
    return console_of(request).page(
        request, "data_catalogue.html", q=q, chosen=chosen, found=found, links=links,
        datasets=[service.public(d) for d in found.datasets], page=page, pages=max(1, -(-found.total // size)),
        clear={facet: _with(q, chosen, facet, "") for facet in chosen})


def _with(q: str, chosen: dict[str, str], facet: str, value: str) -> str:
    params = {k: v for k, v in {**chosen, facet: value, "q": q}.items() if v}
    return "/data" + (f"?{urlencode(params)}" if params else "")


def dataset_page(request: Request, session: Session, settings: Settings, who: Principal | None, name: str, *,
                 error: SovstackError | None = None, status: int = 200) -> HTMLResponse:
    dataset = service.get_visible(session, who, name)
    steward = who is not None and who.has_role(dataset.publisher_id, *service.STEWARDS)
    grants = [grant_public(g) for g in access.grants_of(session, who, name)] if who and steward else []
    mine = access.live_grant(session, who.user_id if who else None, dataset.id, "download", "sandbox")
    return console_of(request).page(
        request, "data_dataset.html", status if not error else error.status, d=service.public(dataset),
        versions=[service.version_public(v) for v in reversed(dataset.versions)], steward=steward,
        grants=grants, my_grant=grant_public(mine) if mine else None, error=error,
        preview=access.preview(session, who, settings, dataset),
        mode=access.grant_mode(session, settings, dataset), orgs=_orgs(session, who), visitor=who is None)


def _orgs(session: Session, who: Principal | None) -> list[tuple[int, str]]:
    roles = who.roles if who else {}
    return [(org_id, identity.get_organisation(session, org_id).name) for org_id in sorted(roles)]


@router.get("/data/datasets/{name}")
def dataset(request: Request, name: str, session: SessionDep, settings: SettingsDep,
            who: ConsoleVisitor) -> HTMLResponse:
    return dataset_page(request, session, settings, who, name)


# Publishing ---------------------------------------------------------------------------------------

PUBLISH_ROUTE = r"/data/datasets/[^/]+/publish"  # streams large files: its own body limit
NEW_FIELDS = ("name", "title", "publisher_id", "licence", "classification", "storage_jurisdiction", "description",
              "languages", "keywords", "spatial", "provenance", "entity_column", "k_threshold", "dp_keys", "dp_bounds",
              "dp_epsilon_cap", "dp_max_rows_per_entity", "dp_delta_cap")
_OPTIONAL = ("dp_epsilon_cap", "dp_max_rows_per_entity", "dp_delta_cap")  # blank: the model's default


def _stewarded(session: Session, who: Principal) -> list[tuple[int, str]]:
    """The organisations whose datasets the principal may publish."""
    orgs = identity.list_organisations(session) if who.acts_as_admin else [
        identity.get_organisation(session, org_id) for org_id, roles in who.roles.items() if roles & set(STEWARD_ROLES)]
    return sorted(((o.id, o.name) for o in orgs), key=lambda o: o[1])


def new_page(request: Request, session: Session, settings: Settings, who: Principal, *,
             error: SovstackError | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
    return console_of(request).page(
        request, "data_new.html", error.status if error else 200, error=error, form=form or {},
        orgs=_stewarded(session, who), countries=countries(), home=settings.home_jurisdiction)


@router.get("/data/new")
def new(request: Request, session: SessionDep, settings: SettingsDep, user: ConsoleUser) -> HTMLResponse:
    return new_page(request, session, settings, user[1])


def _words(text: str) -> list[str]:
    return [w.strip() for w in text.replace(";", ",").split(",") if w.strip()]


def _pairs(text: str, separator: str, field: str) -> dict[str, list[str]]:
    """``region=North,South; sex=F,M`` (public keys) or ``cost:0:200; age:0:120`` (bounds), one per ``;``."""
    found: dict[str, list[str]] = {}
    for part in (p.strip() for p in text.split(";") if p.strip()):
        column, sep, rest = part.partition(separator)
        if not sep or not column.strip() or not rest.strip():
            example = "region=North,South" if separator == "=" else "cost:0:200"
            raise BadInput(f"{field}: write {part!r} as e.g. {example}", field=field)
        found[column.strip()] = [v.strip() for v in rest.split("," if separator == "=" else ":")]
    return found


@router.post("/data/new")
def create(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster, name: FormStr = "",
           title: FormStr = "", publisher_id: FormStr = "", licence: FormStr = "", classification: FormStr = "",
           storage_jurisdiction: FormStr = "", description: FormStr = "", languages: FormStr = "",
           keywords: FormStr = "", spatial: FormStr = "", provenance: FormStr = "", entity_column: FormStr = "",
           k_threshold: FormStr = "10", dp_keys: FormStr = "", dp_bounds: FormStr = "", dp_epsilon_cap: FormStr = "",
           dp_max_rows_per_entity: FormStr = "", dp_delta_cap: FormStr = "") -> Response:
    who, form = user[1], dict(zip(NEW_FIELDS, (name, title, publisher_id, licence, classification,
                                                storage_jurisdiction, description, languages, keywords, spatial,
                                                provenance, entity_column, k_threshold, dp_keys, dp_bounds,
                                                dp_epsilon_cap, dp_max_rows_per_entity, dp_delta_cap),
                                  strict=True))
    given = {field: value for field, value in form.items() if field not in _OPTIONAL or value.strip()}
    try:
        data = parse(DatasetCreate, **{**given, "languages": _words(languages), "keywords": _words(keywords),
                                       "dp_keys": _pairs(dp_keys, "=", "dp_keys"),
                                       "dp_bounds": _pairs(dp_bounds, ":", "dp_bounds")})
        with unit_of_work(session, who):
            service.create_dataset(session, who, settings, data)
    except FormErrors as exc:
        return new_page(request, session, settings, who, error=exc, form=form)
    return see_other(f"/data/datasets/{name}", "Dataset created: now publish its first file.")


def _publish_form(session: Session, settings: Settings, who: Principal, name: str, form: FormData) -> str:
    upload = form.get("file")
    if not isinstance(upload, StarletteUpload) or not upload.filename:
        raise BadInput("choose a file to publish", field="file")
    fmt, note = ingest.format_of(upload.filename), str(form.get("note") or "")[:500]
    source = ingest.staging(settings.home / "objects") / f"console-{uuid.uuid4().hex}"
    try:
        with source.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        with unit_of_work(session, who):
            csv = ingest.CsvOptions(encoding="latin-1" if form.get("encoding") == "latin-1" else "utf-8",
                                    allow_ragged_rows=bool(form.get("allow_ragged_rows")))
            version = service.publish_version(session, who, settings, name, source, fmt, note=note, csv=csv,
                                              allow_schema_change=bool(form.get("allow_schema_change")))
            return f"Version {version.number} published: {version.rows:,} rows." + (
                f" Note: {version.note}" if version.note != note else "")  # how the file was read
    finally:
        source.unlink(missing_ok=True)


@router.post("/data/datasets/{name}/publish")
async def publish(request: Request, name: str, session: SessionDep, settings: SettingsDep,
                  user: ConsoleUser) -> Response:
    """Publish an uploaded file. The form is read only after the session is known (a visitor without
    one sends no bytes to disk); the parser spools the file to disk, never holding it whole in memory."""
    who = user[1]
    form = await request.form()
    try:
        check_csrf(str(form.get("csrf_token") or ""), user[0])  # a forged post is refused and audited
        try:
            done = await run_in_threadpool(_publish_form, session, settings, who, name, form)
        except FormErrors as exc:
            return dataset_page(request, session, settings, who, name, error=exc)
    finally:
        await form.close()
    return see_other(f"/data/datasets/{name}", done)


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
           decision: FormStr = "", reason: FormStr = "", days: FormStr = "", epsilon: FormStr = "",
           daily_queries: FormStr = "") -> Response:
    who = user[1]
    try:
        data = parse(RequestDecision, approve=decision == "approve", reason=reason, days=days or None,
                     epsilon=epsilon or None, daily_queries=daily_queries or None)
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


# Sandbox ------------------------------------------------------------------------------------------

CHART_BARS = 30


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: suppressed
    y: float
    width: float

    @property
    def text(self) -> str:
        if self.value is None:
            return "suppressed"
        return f"{int(self.value):,}" if self.value.is_integer() else f"{self.value:,.2f}"


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    height: int
    left: int = 160
    width: int = 640


def chart_of(result: dict[str, Any]) -> Chart | None:
    """Bars of the first numeric column by the first column, when the result is a grouped one."""
    columns, rows = result["columns"], result["rows"]
    if len(columns) < 2 or not rows:
        return None
    numeric = next((i for i in range(1, len(columns))
                    if all(r[i] is None or isinstance(r[i], int | float) for r in rows)
                    and any(isinstance(r[i], int | float) for r in rows)), None)
    if numeric is None:
        return None
    shown = rows[:CHART_BARS]
    top = max((abs(float(r[numeric])) for r in shown if r[numeric] is not None), default=0.0) or 1.0
    span = 640 - 160 - 70
    bars = [Bar(_label(r[:numeric]), None if r[numeric] is None else float(r[numeric]),
                8 + i * 26, 0 if r[numeric] is None else span * abs(float(r[numeric])) / top)
            for i, r in enumerate(shown)]
    return Chart(f"{columns[numeric]} by {', '.join(columns[:numeric])}", bars, 16 + 26 * len(bars))


def _label(keys: list[Any]) -> str:
    """A bar's label: its group keys (a suppressed group's keys are blank)."""
    text = " · ".join("—" if k is None else str(k) for k in keys)
    return text if len(text) <= 28 else text[:27] + "…"


def sandbox_page(request: Request, session: Session, who: Principal, *, sql: str = "", epsilon: str = "0.1",
                 result: dict[str, Any] | None = None, error: SovstackError | None = None) -> HTMLResponse:
    usable = [d for d in service.all_datasets(session) if d.current_version and (
        d.classification == "open" or who.acts_as_admin
        or access.live_grant(session, who.user_id, d.id, "download", "sandbox") is not None)]
    return console_of(request).page(
        request, "data_sandbox.html", error.status if error else 200, sql=sql, epsilon=epsilon, result=result,
        error=error,
        chart=chart_of(result) if result else None, usable=[service.public(d) for d in usable],
        history=[queries.public(q) for q in queries.history(session, who, 20)] if who.user_id else [])


@router.get("/data/sandbox")
def sandbox(request: Request, session: SessionDep, user: ConsoleUser, sql: str = "") -> HTMLResponse:
    return sandbox_page(request, session, user[1], sql=sql)


@router.post("/data/sandbox")
def sandbox_run(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                sql: FormStr = "", epsilon: FormStr = "0.1") -> HTMLResponse:
    who = user[1]
    try:
        data = parse(SandboxQueryCreate, sql=sql, max_rows=200, epsilon=epsilon or "0.1")
        outcome = queries.run(session, who, settings, data.sql, Limits(max_rows=data.max_rows,
                                                                       seconds=settings.sandbox_seconds), data.epsilon)
    except SovstackError as exc:
        session.rollback()
        return sandbox_page(request, session, who, sql=sql, epsilon=epsilon, error=exc)
    return sandbox_page(request, session, who, sql=sql, epsilon=epsilon, result=queries.result_public(outcome))


def airlock_page(request: Request, session: Session, who: Principal, *, sql: str = "", purpose: str = "",
                 error: SovstackError | None = None) -> HTMLResponse:
    stewards = who.acts_as_admin or any(roles & set(STEWARD_ROLES) for roles in who.roles.values())
    review = ([airlock.public(session, r, reviews=False) for r in airlock.listing(session, who, "review", "held")]
              if stewards else None)
    mine = [airlock.public(session, r, reviews=False) for r in airlock.listing(session, who, "mine")]
    return console_of(request).page(request, "data_airlock.html", error.status if error else 200, sql=sql,
                                    purpose=purpose, review=review, mine=mine if who.user_id else [], error=error)


@router.get("/data/airlock")
def airlock_home(request: Request, session: SessionDep, user: ConsoleUser, sql: str = "") -> HTMLResponse:
    return airlock_page(request, session, user[1], sql=sql)


@router.post("/data/airlock")
def airlock_submit(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                   sql: FormStr = "", purpose: FormStr = "") -> Response:
    who = user[1]
    try:
        data = parse(AirlockSubmit, sql=sql, purpose=purpose)
        held = airlock.submit(session, who, settings, data.sql, data.purpose, Limits(seconds=settings.sandbox_seconds),
                              background=request.app.state.db)
    except SovstackError as exc:
        session.rollback()
        return airlock_page(request, session, who, sql=sql, purpose=purpose, error=exc)
    return see_other(f"/data/airlock/{held.id}", f"Request {held.id} is held for a steward's review.")


def airlock_request_page(request: Request, session: Session, who: Principal, request_id: int,
                         error: SovstackError | None = None) -> HTMLResponse:
    held, reviews = airlock.get(session, who, request_id)
    out = airlock.public(session, held, reviews)
    marks = {f"{c['row']}:{c['column']}": c for c in out.get("checks", {}).get("cells", []) if c["status"] != "ok"}
    return console_of(request).page(request, "data_airlock_request.html", error.status if error else 200, r=out,
                                    reviews=reviews, marks=marks, error=error)


@router.get("/data/airlock/{request_id}")
def airlock_request(request: Request, request_id: int, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    return airlock_request_page(request, session, user[1], request_id)


@router.post("/data/airlock/{request_id}/decide")
def airlock_decide(request: Request, request_id: int, session: SessionDep, user: ConsolePoster,
                   decision: FormStr = "", reason: FormStr = "") -> Response:
    who = user[1]
    try:
        data = parse(AirlockDecision, release=decision == "release", reason=reason)
        with unit_of_work(session, who):
            held = airlock.decide(session, who, request_id, data.release, data.reason)
    except FormErrors as exc:
        session.rollback()
        return airlock_request_page(request, session, who, request_id, exc)
    return see_other(f"/data/airlock/{held.id}", f"Request {held.id} {held.status}.")
