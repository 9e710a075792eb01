"""Console pages of the gateway: the model catalogue with its sovereignty facts, usage charts, a playground."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

import httpx
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from sovstack.console.auth import ConsolePoster, ConsoleUser
from sovstack.console.routes import console_of, countries, parse, see_other
from sovstack.core import documents, identity, parties, policy
from sovstack.core.api.deps import SessionDep, SettingsDep
from sovstack.core.base import utcnow
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused, SovstackError
from sovstack.core.jurisdictions import catalogue as jurisdiction_catalogue
from sovstack.core.plugins import ConsolePages, NavEntry
from sovstack.core.settings import Settings
from sovstack.gateway import circuits, limits_pages, service, usage
from sovstack.gateway.routing import Breakers
from sovstack.gateway.schemas import Catalogue, CutoffRequest, DeploymentPublic, UsagePoint, UsageRow
from sovstack.gateway.tables import Deployment

router = APIRouter(include_in_schema=False)
router.include_router(limits_pages.router)
TEMPLATES = Path(__file__).resolve().parent / "templates"
# A probe only says whether the server answers; the page must not wait on a dead one.
PROBE_SECONDS = 1.5
DAY_CHOICES = (7, 30, 90, 365)
ROUND_STEPS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
GroupBy = Literal["organisation", "model", "deployment", "key"]
FormStr = Annotated[str, Form()]
# Errors a cut-off form can cause; each is shown on the catalogue page with its 4xx status.
CutoffErrors = (BadInput, Refused, NotFound, Conflict)


def console_pages() -> ConsolePages:
    """The gateway's console: its router, its navigation entries, its templates."""
    return ConsolePages(router, nav=(NavEntry("Models", "/gateway", 100), NavEntry("Usage", "/gateway/usage", 101),
                                     NavEntry("Playground", "/gateway/playground", 102),
                                     NavEntry("Limits", "/gateway/limits", 103)),
                        templates=TEMPLATES)


# Catalogue ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reach:
    """Whether a deployment's server answered a probe of ``/models``, and how."""

    reachable: bool
    detail: str


@dataclass(frozen=True)
class DeploymentView:
    facts: DeploymentPublic
    operator_parent: str
    exposure: list[str]


@dataclass(frozen=True)
class ModelView:
    name: str
    description: str
    language_routing: bool
    deployments: list[DeploymentView] = field(default_factory=list)
    enabled: bool = True


def catalogue_view(session: Session, home: str, local: tuple[str, Breakers]) -> list[ModelView]:
    """Every logical model with its deployments' sovereignty facts and circuit state (as the server
    processes report it; ``local`` is this one's own), as plain data."""
    reports = circuits.reported(session, local)

    def view(dep: Deployment) -> DeploymentView:
        return DeploymentView(service.public(dep, reports.get(dep.id, circuits.CLOSED)), dep.operator.ultimate_parent,
                              parties.exposure(dep.operator, home))

    return [ModelView(m.name, m.description, m.language_routing,
                      [view(d) for d in sorted(m.deployments, key=lambda d: (d.priority, d.name))], m.enabled)
            for m in service.list_models(session)]


def _failure(exc: httpx.HTTPError | httpx.InvalidURL) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {PROBE_SECONDS:g} s"
    text = str(exc).strip() or type(exc).__name__
    prefix = "cannot connect" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
    return f"{prefix}: {text}"[:160]


async def probe(client: httpx.AsyncClient, base_url: str) -> Reach:
    """GET ``base_url/models`` without credentials; any answer below 500 means the server is there."""
    started = time.perf_counter()
    try:
        resp = await asyncio.wait_for(client.get(base_url.rstrip("/") + "/models", timeout=PROBE_SECONDS),
                                      PROBE_SECONDS)
    except TimeoutError:
        return Reach(False, f"no answer within {PROBE_SECONDS:g} s")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return Reach(False, _failure(exc))
    elapsed = (time.perf_counter() - started) * 1000
    if resp.status_code >= 500:
        return Reach(False, f"HTTP {resp.status_code}")
    return Reach(True, f"HTTP {resp.status_code} in {elapsed:.0f} ms")


async def probe_all(client: httpx.AsyncClient, models: list[ModelView]) -> dict[int, Reach]:
    """Probe every deployment at once: the page waits at most one probe's time."""
    deps = [d.facts for m in models for d in m.deployments]
    found = await asyncio.gather(*(probe(client, d.base_url) for d in deps))
    return {d.id: r for d, r in zip(deps, found, strict=True)}


async def catalogue_page(request: Request, session: Session, settings: Settings, who: Principal, *,
                         error: SovstackError | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
    state = request.app.state.gateway

    def load() -> tuple[str, list[ModelView], list[str]]:
        home = policy.current(session, settings.home_jurisdiction).home_jurisdiction
        names = [p.name for p in parties.list_parties(session)]
        return home, catalogue_view(session, home, (request.app.state.circuits.process, state.breakers)), names

    home, models, party_names = await run_in_threadpool(load)
    reach = await probe_all(state.probe, models)
    names = {code: c.name for code, c in jurisdiction_catalogue().countries.items()}
    return console_of(request).page(
        request, "gateway_models.html", error.status if error else 200, models=models, reach=reach, home=home,
        country_names=names, countries=countries(), party_names=party_names, can_manage=who.acts_as_admin,
        error=error, form=form or {}, probe_seconds=PROBE_SECONDS)


@router.get("/gateway")
async def models_page(request: Request, session: SessionDep, settings: SettingsDep,
                      user: ConsoleUser) -> HTMLResponse:
    return await catalogue_page(request, session, settings, user[1])


Change = Callable[[Session, Principal, CutoffRequest], list[Deployment]]


def change(session: Session, who: Principal, action: Change, form: dict[str, str]) -> list[str]:
    """Parse the cut-off form and apply ``action`` (cut-off or restore) in one unit of work."""
    values = {k: v for k, v in form.items() if v}
    data = parse(CutoffRequest, **values)
    with unit_of_work(session, who):
        return [d.name for d in action(session, who, data)]


def _names(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


async def change_page(request: Request, session: Session, settings: Settings, who: Principal, action: Change,
                      form: dict[str, str], done: Callable[[list[str]], str]) -> Response:
    """Apply the form, then back to the catalogue with what changed; a refusal is shown on the page."""
    try:
        names = await run_in_threadpool(change, session, who, action, form)
    except CutoffErrors as exc:
        return await catalogue_page(request, session, settings, who, error=exc, form=form)
    return see_other("/gateway", done(names))


@router.post("/gateway/cutoff")
async def cutoff(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                 jurisdiction: FormStr = "", party: FormStr = "", reason: FormStr = "") -> Response:
    target = jurisdiction or party
    return await change_page(
        request, session, settings, user[1], service.cutoff,
        {"jurisdiction": jurisdiction, "party": party, "reason": reason},
        lambda names: f"Cut off {target}: withdrew {_names(names)}." if names else f"No deployment touches {target}.")


@router.post("/gateway/restore")
async def restore(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                  jurisdiction: FormStr = "", party: FormStr = "") -> Response:
    target = jurisdiction or party
    return await change_page(
        request, session, settings, user[1], service.restore, {"jurisdiction": jurisdiction, "party": party},
        lambda names: f"Restored {_names(names)}." if names else f"Nothing withdrawn touches {target}.")


def apply_text(session: Session, settings: Settings, who: Principal, text: str) -> dict[str, list[str]]:
    """Parse a catalogue (YAML or JSON) from the form and apply it like `sovstack gateway apply`."""
    raw = documents.load_yaml(text, "the catalogue", field="catalogue")
    if not isinstance(raw, dict):
        raise BadInput("the catalogue must be a mapping with a 'models' list", field="catalogue")
    data = parse(Catalogue, **raw)
    with unit_of_work(session, who):
        return service.apply_catalogue(session, who, settings, data)


@router.post("/gateway/apply")
async def apply(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                catalogue: FormStr = "") -> Response:
    """Register or update models and deployments from a pasted catalogue (the models.yaml format)."""
    try:
        result = await run_in_threadpool(apply_text, session, settings, user[1], catalogue)
    except CutoffErrors as exc:
        return await catalogue_page(request, session, settings, user[1], error=exc, form={"catalogue": catalogue})
    changed = result["created"] + result["updated"]
    return see_other("/gateway", f"Catalogue applied: {_names(changed)}." if changed else "Catalogue unchanged.")


def manage(session: Session, who: Principal, kind: str, verb: str, name: str) -> str:
    """Disable, enable or delete one deployment or model, in one unit of work; what happened, as a line."""
    with unit_of_work(session, who):
        if verb == "delete" and kind == "deployments":
            service.delete_deployment(session, who, name)
            return f"Deleted deployment {name}; its usage history is kept."
        if verb == "delete":
            gone = service.delete_model(session, who, name, force=True)
            return f"Deleted model {name}" + (f" and its deployments {_names(gone)}." if gone else ".")
        enabled = verb == "enable"
        if kind == "deployments":
            service.set_deployment_enabled(session, who, name, enabled)
        else:
            service.set_model_enabled(session, who, name, enabled)
        return f"{verb.capitalize()}d {kind[:-1]} {name}."


@router.post("/gateway/manage/{kind}/{verb}")
async def manage_page(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
                      kind: Literal["deployments", "models"], verb: Literal["disable", "enable", "delete"],
                      name: FormStr = "") -> Response:
    """The console's buttons on each deployment and model (admins only; every change is audited).

    Deleting a model from the console deletes its deployments with it: the button says so and asks first.
    """
    try:
        done = await run_in_threadpool(manage, session, user[1], kind, verb, name)
    except CutoffErrors as exc:
        return await catalogue_page(request, session, settings, user[1], error=exc)
    return see_other("/gateway", done)


# Usage --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class DailyChart:
    """Requests per day as columns, with y gridlines and a few date labels."""

    width: int
    height: int
    left: int
    top: int
    bottom: float
    bars: list[Bar]
    y_ticks: list[Tick]
    x_labels: list[Tick]


@dataclass(frozen=True)
class GroupBarRow:
    label: str
    y: float
    tokens_in: Bar
    tokens_out: Bar
    total: int


@dataclass(frozen=True)
class GroupChart:
    """Tokens per group as horizontal stacked bars (input, output)."""

    width: int
    height: int
    left: int
    rows: list[GroupBarRow]
    x_ticks: list[Tick]


def nice_ceiling(value: float) -> float:
    """The smallest round number (1, 1.2, 1.5, 2, … 8 × 10ⁿ) at or above ``value``, at least 1: an axis maximum."""
    if value <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in ROUND_STEPS if step * power >= value)


def compact(value: float) -> str:
    """12, 3.4k, 1.2M: axis labels that fit."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:g}"


def days_between(first: date, last: date, points: Sequence[UsagePoint]) -> list[UsagePoint]:
    """The daily series with the quiet days filled in, so the columns are a true time axis."""
    known = {p.day: p for p in points}
    span = (last - first).days + 1
    days = [(first + timedelta(days=i)).isoformat() for i in range(span)]
    return [known.get(d) or UsagePoint(day=d, requests=0, tokens=0, costs={}) for d in days]


def daily_chart(points: list[UsagePoint], width: int = 960, height: int = 240) -> DailyChart:
    left, top, bottom_pad, right = 48, 12, 28, 8
    plot_w, plot_h = width - left - right, height - top - bottom_pad
    peak = nice_ceiling(max((p.requests for p in points), default=0))
    slot = plot_w / max(len(points), 1)
    gap = min(slot * 0.25, 6.0)
    bars = []
    for i, p in enumerate(points):
        h = plot_h * p.requests / peak
        bars.append(Bar(left + i * slot + gap / 2, top + plot_h - h, max(slot - gap, 1.0), h,
                        f"{p.day}: {p.requests} requests, {p.tokens} tokens"))
    y_ticks = [Tick(top + plot_h - plot_h * i / 4, compact(peak * i / 4)) for i in range(5)]
    every = max(1, math.ceil(len(points) / 8))
    x_labels = [Tick(left + i * slot + slot / 2, p.day[5:]) for i, p in enumerate(points) if i % every == 0]
    return DailyChart(width, height, left, top, top + plot_h, bars, y_ticks, x_labels)


def group_chart(rows: list[UsageRow], labels: dict[str, str], width: int = 960, limit: int = 12) -> GroupChart:
    left, right, row_h, top = 250, 80, 30, 8
    ranked = sorted(rows, key=lambda r: r.tokens_in + r.tokens_out, reverse=True)[:limit]
    plot_w = width - left - right
    peak = nice_ceiling(max((r.tokens_in + r.tokens_out for r in ranked), default=0))
    out = []
    for i, r in enumerate(ranked):
        y = top + i * row_h
        w_in, w_out = plot_w * r.tokens_in / peak, plot_w * r.tokens_out / peak
        name = labels.get(r.group, r.group)
        out.append(GroupBarRow(name if len(name) <= 36 else name[:35] + "…", y,
                               Bar(left, y + 5, w_in, row_h - 10, f"{name}: {r.tokens_in} tokens in"),
                               Bar(left + w_in, y + 5, w_out, row_h - 10, f"{name}: {r.tokens_out} tokens out"),
                               r.tokens_in + r.tokens_out))
    height = top + max(len(out), 1) * row_h + 22
    x_ticks = [Tick(left + plot_w * i / 4, compact(peak * i / 4)) for i in range(5)]
    return GroupChart(width, height, left, out, x_ticks)


def _summed(costs: Iterable[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for each in costs:
        for currency, value in each.items():
            total[currency] = total.get(currency, 0.0) + value
    return total


@router.get("/gateway/usage")
def usage_page(request: Request, session: SessionDep, user: ConsoleUser, by: GroupBy = "model",
               days: Annotated[int, Query(ge=1, le=366)] = 30) -> HTMLResponse:
    today = utcnow().date()
    first = today - timedelta(days=days - 1)
    since = utcnow() - timedelta(days=days)
    report = usage.report(session, user[1], by=by, since=since)
    labels = {str(o.id): o.name for o in identity.list_organisations(session)} if by == "organisation" else {}
    series = days_between(min([first, *(date.fromisoformat(p.day) for p in report.daily)]), today, report.daily)
    totals = {"requests": sum(r.requests for r in report.rows),
              "tokens": sum(r.tokens_in + r.tokens_out for r in report.rows),
              "cost": usage.money(_summed(r.costs for r in report.rows), 2),
              "errors": sum(r.errors for r in report.rows), "refused": sum(r.refused for r in report.rows)}
    rows = sorted(report.rows, key=lambda r: labels.get(r.group, r.group).lower())
    return console_of(request).page(
        request, "gateway_usage.html", money=usage.money, report=report, rows=rows, by=by, days=days,
        labels=labels, totals=totals,
        groups=usage.GROUPS, day_choices=sorted({*DAY_CHOICES, days}), daily=daily_chart(series),
        tokens=group_chart(report.rows, labels), sees_all=user[1].acts_as_admin)


# Playground ---------------------------------------------------------------------------------------

@router.get("/gateway/playground")
def playground(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    models = [m.name for m in service.list_models(session) if service.servable(m)]
    mine = [(o.id, o.name) for o in identity.list_organisations(session) if o.id in user[1].roles]
    return console_of(request).page(request, "gateway_playground.html", models=models, levels=policy.LEVELS,
                                    organisations=mine)
