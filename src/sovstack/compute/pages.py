"""Console pages of the compute exchange: the market of providers and offers, a programme's dashboard with
its allocation results, the application form, the reviewer queue and the cut-off drill."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from sovstack.compute import allocations, cutoff, programmes, providers, rounds, usage
from sovstack.compute.schemas import AllocationDecision, CutoffCreate, RequestCreate, ReviewCreate
from sovstack.console.auth import ConsolePoster, ConsoleUser
from sovstack.console.routes import console_of, parse, see_other
from sovstack.core import identity
from sovstack.core.api.deps import SessionDep, SettingsDep
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.errors import BadInput, Conflict, NotFound, Refused, SovstackError
from sovstack.core.plugins import ConsolePages, NavEntry

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).resolve().parent / "templates"
FormStr = Annotated[str, Form()]
FormErrors = (BadInput, Refused, NotFound, Conflict)
CHART_WIDTH, CHART_LEFT, BAR = 420, 150, 26  # small enough to read inside a third of the page


def console_pages() -> ConsolePages:
    return ConsolePages(router, nav=(NavEntry("Compute", "/compute", 90), NavEntry("Apply", "/compute/apply", 91),
                                     NavEntry("Reviews", "/compute/reviews", 92),
                                     NavEntry("Cut-off drill", "/compute/cutoff", 93)),
                        templates=TEMPLATES)


def share_chart(rows: list[dict[str, Any]], cap: float | None, title: str) -> dict[str, Any]:
    """Horizontal bars of shares (0–1) with the cap drawn as a line: what the template turns into SVG."""
    span = CHART_WIDTH - CHART_LEFT - 60
    bars = [{"name": r["name"], "label": r["name"] if len(r["name"]) <= 22 else r["name"][:21] + "…",
             "share": r["share"], "y": 8 + i * BAR, "width": max(r["share"] * span, 1),
             "text": f"{r['share']:.1%}", "over": r.get("cap") is not None and r["share"] > r["cap"] + 1e-9,
             "capped": r.get("cap") is not None} for i, r in enumerate(rows)]
    return {"title": title, "bars": bars, "left": CHART_LEFT, "width": CHART_WIDTH, "height": 16 + len(bars) * BAR,
            "cap_x": CHART_LEFT + cap * span if cap is not None else None, "cap": cap}


@router.get("/compute")
def market(request: Request, session: SessionDep, settings: SettingsDep, user: ConsoleUser) -> HTMLResponse:
    home = settings.home_jurisdiction
    return console_of(request).page(
        request, "compute_market.html", home=home,
        providers=[providers.provider_public(p, home) for p in providers.list_providers(session)],
        offers=[providers.offer_public(o, home) for o in providers.list_offers(session)],
        programmes=[programmes.programme_public(p) for p in programmes.list_programmes(session)])


def programme_page(request: Request, session: Session, home: str, who: Principal, name: str, *,
                   error: SovstackError | None = None) -> HTMLResponse:
    board = usage.dashboard(session, name, home)
    caps = board["programme"]["caps"]  # type: ignore[index]
    shares: dict[str, Any] = board["shares"]  # type: ignore[assignment]
    charts = [share_chart(shares[kind], caps.get(kind), label) for kind, label in
              (("provider", "Share per provider"), ("group", "Share per corporate group"),
               ("foreign", "Foreign-controlled share"), ("chip_vendor", "Share per chip vendor")) if shares[kind]]
    rnds = [programmes.round_public(session, r) for r in programmes.list_rounds(session, name)]
    requests = [programmes.request_public(r) for r in programmes.list_requests(session, who, programme=name)]
    allocs = [allocations.allocation_public(a) for a in allocations.list_allocations(session, who, programme=name)]
    staff = {a.id for a in allocations.list_allocations(session, who, programme=name)
             if a.status == "proposed" and _is_staff(who, a.offer.provider.organisation_id)}
    return console_of(request).page(
        request, "compute_programme.html", error.status if error else 200, error=error, board=board, charts=charts,
        rounds=rnds, requests=requests, allocations=allocs, staff=staff, admin=who.acts_as_admin)


def _is_staff(who: Principal, org_id: int | None) -> bool:
    return who.acts_as_admin or (org_id is not None and who.has_role(org_id))


@router.get("/compute/programmes/{name}")
def programme(request: Request, name: str, session: SessionDep, settings: SettingsDep,
              user: ConsoleUser) -> HTMLResponse:
    return programme_page(request, session, settings.home_jurisdiction, user[1], name)


@router.post("/compute/programmes/{name}/allocate")
def allocate(request: Request, name: str, session: SessionDep, settings: SettingsDep,
             user: ConsolePoster) -> Response:
    who = user[1]
    try:
        with unit_of_work(session, who):
            rnd = rounds.allocate_round(session, who, name, settings.home_jurisdiction)
            res = dict(rnd.result)
    except FormErrors as exc:
        return programme_page(request, session, settings.home_jurisdiction, who, name, error=exc)
    if res["status"] == "infeasible":
        error = Conflict("the round is infeasible; nothing was allocated", reasons=list(res["conflicts"]))
        return programme_page(request, session, settings.home_jurisdiction, who, name, error=error)
    return see_other(f"/compute/programmes/{name}", f"Allocated: {res['placements']} of {res['requests']} requests "
                                                    f"placed, proven gap {res['gap']:.2%}.")


@router.post("/compute/allocations/{allocation_id}/decide")
def decide(request: Request, allocation_id: int, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
           decision: FormStr = "", reason: FormStr = "", programme: FormStr = "") -> Response:
    who = user[1]
    try:
        data = parse(AllocationDecision, decision=decision, reason=reason)
        with unit_of_work(session, who):
            outcome = allocations.decide(session, who, allocation_id, data, settings.home_jurisdiction)
    except FormErrors as exc:
        return programme_page(request, session, settings.home_jurisdiction, who, programme, error=exc)
    moved = f"; re-solved {len(outcome)} requests" if outcome else ""
    return see_other(f"/compute/programmes/{programme}", f"Allocation {allocation_id}: {decision}ed{moved}.")


# Applying and reviewing ------------------------------------------------------------------------

def _my_orgs(session: Session, who: Principal) -> list[str]:
    ids = identity.list_organisations(session) if who.acts_as_admin else [
        identity.get_organisation(session, org_id) for org_id in who.roles]
    return sorted(o.name for o in ids)


def apply_page(request: Request, session: Session, who: Principal, *, error: SovstackError | None = None,
               form: dict[str, str] | None = None) -> HTMLResponse:
    mine = [programmes.request_public(r) for r in programmes.list_requests(session, who)
            if who.roles.get(r.organisation_id) or who.acts_as_admin]
    gpu_types = sorted({o.gpu_type for o in providers.list_offers(session, include_withdrawn=False)})
    return console_of(request).page(
        request, "compute_apply.html", error.status if error else 200, error=error, form=form or {},
        programmes=[programmes.programme_public(p) for p in programmes.list_programmes(session)],
        orgs=_my_orgs(session, who), gpu_types=gpu_types, requests=mine)


@router.get("/compute/apply")
def apply_form(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    return apply_page(request, session, user[1])


@router.post("/compute/apply")
def apply(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster, programme: FormStr = "",
          organisation: FormStr = "", title: FormStr = "", proposal: FormStr = "", gpu_types: FormStr = "",
          gpus_per_job: FormStr = "", gpu_hours: FormStr = "", earliest_period: FormStr = "0",
          latest_period: FormStr = "", data_classification: FormStr = "open") -> Response:
    who = user[1]
    form = {"programme": programme, "organisation": organisation, "title": title, "proposal": proposal,
            "gpu_types": gpu_types, "gpus_per_job": gpus_per_job, "gpu_hours": gpu_hours,
            "earliest_period": earliest_period, "latest_period": latest_period,
            "data_classification": data_classification}
    try:
        types = [t.strip() for t in gpu_types.replace(";", ",").split(",") if t.strip()]
        data = parse(RequestCreate, **{**form, "gpu_types": types})
        with unit_of_work(session, who):
            made = rounds.submit(session, who, data, settings.home_jurisdiction)
            done = (f"Request {made.id} fast-tracked: {made.explanation.get('text', '')}" if made.fast_track
                    else f"Request {made.id} submitted for review.")
    except FormErrors as exc:
        return apply_page(request, session, who, error=exc, form=form)
    return see_other("/compute/apply", done)


def reviews_page(request: Request, session: Session, who: Principal,
                 error: SovstackError | None = None) -> HTMLResponse:
    queue = [programmes.request_public(r) for r in programmes.review_queue(session, who)]
    return console_of(request).page(request, "compute_reviews.html", error.status if error else 200, error=error,
                                    queue=queue)


@router.get("/compute/reviews")
def reviews(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    return reviews_page(request, session, user[1])


@router.post("/compute/requests/{request_id}/review")
def review(request: Request, request_id: int, session: SessionDep, user: ConsolePoster, score: FormStr = "",
           comment: FormStr = "") -> Response:
    who = user[1]
    try:
        data = parse(ReviewCreate, score=score, comment=comment)
        with unit_of_work(session, who):
            programmes.score(session, who, request_id, data)
    except FormErrors as exc:
        return reviews_page(request, session, who, error=exc)
    return see_other("/compute/reviews", f"Request {request_id} scored {data.score:g}.")


# The cut-off drill -----------------------------------------------------------------------------

def cutoff_page(request: Request, session: Session, who: Principal, *, error: SovstackError | None = None,
                report: dict[str, Any] | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
    offers = providers.list_offers(session, include_withdrawn=False)
    return console_of(request).page(
        request, "compute_cutoff.html", error.status if error else 200, error=error, report=report, form=form or {},
        provider_names=[p.name for p in providers.list_providers(session)],
        jurisdictions=sorted({j for o in offers for j in (o.provider.party.jurisdiction,
                                                            o.provider.party.parent_jurisdiction,
                                                            o.provider.datacentre_jurisdiction,
                                                            o.provider.control_plane_jurisdiction)}),
        vendors=sorted({o.chip_vendor for o in offers}),
        drills=[cutoff.cutoff_public(c) for c in cutoff.list_cutoffs(session, who)] if who.acts_as_admin else [])


@router.get("/compute/cutoff")
def cutoff_form(request: Request, session: SessionDep, user: ConsoleUser) -> HTMLResponse:
    user[1].require_admin("compute.cutoff", "console")  # drill reports name every organisation's requests
    return cutoff_page(request, session, user[1])


@router.post("/compute/cutoff")
def run_cutoff(request: Request, session: SessionDep, settings: SettingsDep, user: ConsolePoster,
               selector: FormStr = "provider", value: FormStr = "", dry_run: FormStr = "") -> Response:
    who = user[1]
    form = {"selector": selector, "value": value, "dry_run": dry_run}
    if selector not in ("provider", "jurisdiction", "chip_vendor"):
        selector = "provider"
    try:
        data = parse(CutoffCreate, **{selector: value or None, "dry_run": bool(dry_run)})
        with unit_of_work(session, who):
            out = cutoff.run(session, who, data, settings.home_jurisdiction)
    except FormErrors as exc:
        return cutoff_page(request, session, who, error=exc, form=form)
    return cutoff_page(request, session, who, report={"drill": out.id, "selector": out.selector, "value": out.value,
                                                 "dry_run": data.dry_run, **out.report}, form=form)


@router.post("/compute/cutoffs/{cutoff_id}/restore")
def restore(request: Request, cutoff_id: int, session: SessionDep, user: ConsolePoster) -> Response:
    try:
        with unit_of_work(session, user[1]):
            cutoff.restore(session, user[1], cutoff_id)
    except FormErrors as exc:
        return cutoff_page(request, session, user[1], error=exc)
    return see_other("/compute/cutoff", f"Cut-off drill {cutoff_id} restored: capacity and allocations are back.")
