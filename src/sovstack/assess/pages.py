"""Console pages of the assessor: this deployment's live scorecard, a figure expanded, and analysing a
manifest or bill of materials pasted or uploaded in the browser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from sovstack.assess import charts, live, service
from sovstack.assess.api import MEDIA, SUFFIX
from sovstack.assess.criteria import PRESSURE_TITLES, profiles
from sovstack.assess.explain import expand, figure_keys, result_row
from sovstack.assess.results import MODES
from sovstack.assess.service import AssessmentRun
from sovstack.console.auth import ConsolePoster, ConsoleUser
from sovstack.console.routes import console_of
from sovstack.core.api.deps import SessionDep, SettingsDep
from sovstack.core.errors import BadInput, NotFound
from sovstack.core.plugins import ConsolePages, NavEntry

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).resolve().parent / "templates"
FormStr = Annotated[str, Form()]
GATE_ANSWERS_SHOWN = 5


def console_pages() -> ConsolePages:
    return ConsolePages(router, nav=(NavEntry("Sovereignty", "/assess", 90),), templates=TEMPLATES)


@dataclass(frozen=True)
class Scorecard:
    """An assessment laid out for a page: figures, their answers, and the charts as inline SVG."""

    run: AssessmentRun
    gate_answers: list[dict[str, Any]]
    radar: Markup
    bars: Markup
    timelines: dict[str, Markup]
    explain: dict[str, str]  # figure key → where its answers are shown

    @property
    def a(self) -> Any:
        return self.run.assessment


def scorecard(run: AssessmentRun, explain_base: str | None = None) -> Scorecard:
    """The page view of an assessment; figures link to ``explain_base?key=…`` or to an anchor on the page."""
    a = run.assessment
    keys = figure_keys(a)
    links = {k: f"{explain_base}&{urlencode({'key': k})}" if explain_base else f"#figure-{k}" for k in keys}
    return Scorecard(run, [result_row(a.results[i]) for i in a.gate.set_by[:GATE_ANSWERS_SHOWN]],
                     Markup(charts.radar({k: v.value for k, v in a.pressures.items()}, PRESSURE_TITLES)),
                     Markup(charts.layer_bars(a.layers)),
                     {d.scenario: Markup(charts.drill_timeline(d)) for d in a.drills}, links)


def _choices(mode: str, profile: str) -> dict[str, Any]:
    return {"modes": MODES, "profiles": list(profiles()), "mode": mode, "profile": profile,
            "titles": PRESSURE_TITLES}


def _query(mode: str, profile: str) -> str:
    return urlencode({k: v for k, v in {"mode": mode, "profile": profile}.items() if v})


@router.get("/assess")
def self_scorecard(request: Request, session: SessionDep, settings: SettingsDep, user: ConsoleUser,
                   mode: str = "conservative", profile: str = "") -> HTMLResponse:
    run = live.live_assessment(session, request.app.state.plugins, settings, mode=mode, profile_name=profile or None)
    return console_of(request).page(
        request, "assess_self.html", card=scorecard(run, f"/assess/explain?{_query(mode, profile)}"),
        components=run.manifest.components, query=_query(mode, profile), **_choices(mode, profile))


@router.get("/assess/explain")
def explain_figure(request: Request, session: SessionDep, settings: SettingsDep, user: ConsoleUser, key: str = "score",
                   mode: str = "conservative", profile: str = "") -> HTMLResponse:
    run = live.live_assessment(session, request.app.state.plugins, settings, mode=mode, profile_name=profile or None)
    return console_of(request).page(request, "assess_explain.html", figure=expand(run.assessment, key),
                                    keys=figure_keys(run.assessment), query=_query(mode, profile),
                                    **_choices(mode, profile))


# Analysing a document ------------------------------------------------------------------------------

@router.get("/assess/analyse")
def analyse_form(request: Request, settings: SettingsDep, user: ConsoleUser) -> HTMLResponse:
    return analyse_page(request, settings.home_jurisdiction)


def analyse_page(request: Request, home: str, *, text: str = "", mode: str = "conservative", profile: str = "",
                 run: AssessmentRun | None = None, analysed: service.Analysed | None = None,
                 error: BadInput | None = None) -> HTMLResponse:
    figures = {k: expand(run.assessment, k) for k in figure_keys(run.assessment)} if run else {}
    return console_of(request).page(
        request, "assess_analyse.html", error.status if error else 200, text=text, home=home, error=error,
        card=scorecard(run) if run else None, analysed=analysed, figures=figures,
        problems=getattr(error, "problems", []), **_choices(mode, profile))


async def _document(manifest: str, file: UploadFile | None) -> tuple[str, str]:
    """The uploaded file's text when one was chosen, else the pasted text; with a name for messages."""
    if file is not None and file.filename:
        try:
            return (await file.read()).decode("utf-8"), file.filename
        except UnicodeDecodeError as exc:
            raise BadInput("the file is not UTF-8 text (YAML or JSON)", field="file") from exc
    if not manifest.strip():
        raise BadInput("paste a manifest or choose a file", field="manifest")
    return manifest, "manifest"


@router.post("/assess/analyse")
async def analyse(request: Request, settings: SettingsDep, user: ConsolePoster, manifest: FormStr = "",
                  file: Annotated[UploadFile | None, File()] = None, mode: FormStr = "conservative",
                  profile: FormStr = "", format: FormStr = "page") -> Response:  # noqa: A002
    """Assess a pasted or uploaded manifest (or CycloneDX/SPDX document), shown here or downloaded."""
    home = settings.home_jurisdiction
    text = manifest
    try:
        text, name = await _document(manifest, file)
        analysed = service.read_document(text, name, home, date.today())
        run = service.full_assessment(analysed.manifest, mode=mode, profile_name=profile or None, scenarios=[])
        if format in MEDIA:
            return Response(service.render(run, format), media_type=MEDIA[format], headers={
                "content-disposition": f'attachment; filename="sovereignty-assessment.{SUFFIX[format]}"'})
        if format != "page":
            raise NotFound(f"unknown format {format!r}", field="format")
    except BadInput as exc:
        return analyse_page(request, home, text=text, mode=mode, profile=profile, error=exc)
    return analyse_page(request, home, text=text, mode=mode, profile=profile, run=run, analysed=analysed)
