"""HTTP API of the sovereignty assessor under /api/v1/assess: analyse any manifest, and this deployment.

Every route needs a key or a console session; analysis changes nothing, so any principal with the
``read`` scope may run it, POST included (the body is the document to analyse, not a change).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from sovstack.assess import live, service
from sovstack.assess.service import AssessmentRun
from sovstack.assess.validate import load_manifest
from sovstack.core import documents
from sovstack.core.api.deps import SessionDep, SettingsDep, scoped
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput, NotFound

router = APIRouter(prefix="/api/v1/assess", tags=["assess"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
DOCUMENT_TYPES = ("application/json", *YAML_TYPES)
MEDIA = {"json": "application/json", "md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8",
         "cyclonedx": "application/vnd.cyclonedx+json"}
SUFFIX = {"json": "json", "md": "md", "html": "html", "cyclonedx": "cdx.json"}
# The body is read raw (JSON or YAML); this tells OpenAPI readers what to send.
DOCUMENT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "A stack manifest (see schema/manifest)."}},
    "application/yaml": {"schema": {"type": "string", "description": "The same manifest as YAML."}}}}}
BOM_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "CycloneDX 1.6 JSON or SPDX 3.0 JSON-LD."}}}}}

Mode = Literal["tolerant", "conservative", "strict"]
Format = Literal["json", "md", "html", "cyclonedx"]
ModeQ = Annotated[Mode, Query(description="How answers without valid evidence count.")]
ProfileQ = Annotated[str | None, Query(description="Weight profile: eu-csf-document (default), eu-csf-calculator, "
                                                     "ai-sovereignty.")]
ScenariosQ = Annotated[str, Query(description="Scenario ids to drill, comma-separated; `all` or `none`.")]
FormatQ = Annotated[Format, Query(description="Report format: json, md, html (self-contained) or cyclonedx.")]


AnalystDep = Annotated[Principal, scoped("read")]  # console sessions still send their CSRF token


async def document_text(request: Request) -> str:
    """The request body as text, refused unless its content type is JSON or YAML."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind not in DOCUMENT_TYPES:
        raise BadInput(f"unsupported content type {kind!r}: send application/json or application/yaml",
                       field="content-type")
    return documents.decode(await request.body(), "body", field="body")


def scenario_names(value: str) -> list[str] | None:
    """`all` (or blank): every built-in scenario ([]); `none`: no drills (None); else the named ids."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names or names == ["all"]:
        return []
    return None if names == ["none"] else names


def report_response(run: AssessmentRun, fmt: str) -> Response:
    """The report in ``fmt``; HTML and Markdown come as downloads (the page carries its own inline style)."""
    text = service.render(run, fmt)
    headers = {}
    if fmt in ("html", "md"):
        headers["content-disposition"] = f'attachment; filename="sovereignty-assessment.{SUFFIX[fmt]}"'
    return Response(text, media_type=MEDIA[fmt], headers=headers)


@router.post("/run", openapi_extra=DOCUMENT_BODY)
async def run(request: Request, who: AnalystDep, mode: ModeQ = "conservative", profile: ProfileQ = None,
              scenarios: ScenariosQ = "all", format: FormatQ = "json",  # noqa: A002
              explain: Annotated[str | None, Query(description="Expand one figure, e.g. pressures.data_protection"
                                                            ", into its answers and evidence.")] = None) -> Response:
    """Score a manifest (JSON or YAML body): gate and score, pressures, layers, gaps, drills, exit readiness."""
    manifest = load_manifest(await document_text(request), "body")
    result = service.full_assessment(manifest, mode=mode, profile_name=profile, scenarios=scenario_names(scenarios))
    if explain:
        return JSONResponse(service.explain(result.assessment, explain))
    return report_response(result, format)


@router.post("/drill", openapi_extra=DOCUMENT_BODY)
async def drill(request: Request, who: AnalystDep, scenarios: ScenariosQ = "all") -> list[Any]:
    """Run disruption drills on a manifest: what stops, degrades or fails over; residual service; recovery."""
    manifest = load_manifest(await document_text(request), "body")
    return service.drills_data(service.run_drills(manifest, scenario_names(scenarios) or []))


@router.post("/diff")
def compare(who: AnalystDep, before: Annotated[dict[str, Any], Body(description="A manifest or a JSON report.")],
            after: Annotated[dict[str, Any], Body(description="A manifest or a JSON report.")],
            mode: ModeQ = "conservative", profile: ProfileQ = None,
            format: Annotated[Literal["json", "md"], Query()] = "json") -> Response:  # noqa: A002
    """What moved between two assessments, by how much, and the answers behind each move."""
    changes = service.compare_data(before, after, mode=mode, profile_name=profile)
    if format == "md":
        return Response(service.diff_report(changes), media_type=MEDIA["md"])
    return JSONResponse(service.diff_data(changes))


@router.post("/import", openapi_extra=BOM_BODY)
async def import_bom(request: Request, who: AnalystDep, settings: SettingsDep,
                     home: Annotated[str | None, Query(description="Home jurisdiction; default this deployment's.")]
                     = None, as_of: Annotated[date | None, Query(description="Default today.")] = None
                     ) -> dict[str, Any]:
    """A CycloneDX 1.6 or SPDX 3 document as a manifest, and what the manifest still needs."""
    text = await document_text(request)
    imported = service.import_text(text, (home or settings.home_jurisdiction).upper(), as_of or date.today(), "body")
    return {"source_format": imported.source_format, "missing": list(imported.missing),
            "manifest": imported.manifest.model_dump(mode="json", exclude_defaults=True)}


@router.get("/schema/{what}")
def schema(what: str, who: AnalystDep) -> dict[str, Any]:
    """The JSON Schema of a manifest, or of the JSON report."""
    if what not in ("manifest", "report"):
        raise NotFound(f"no schema {what!r}: manifest or report", field="what")
    return service.schema(what)


@router.get("/scenarios")
def scenarios_list(who: AnalystDep) -> list[dict[str, Any]]:
    """The built-in disruption scenarios, with their shocks and sources."""
    return service.scenarios_data()


@router.get("/criteria")
def criteria(who: AnalystDep, name: Annotated[str | None, Query(description="A built-in criteria set.")] = None
             ) -> dict[str, Any]:
    """The criteria set (every criterion, its ladder, levels and sources) and the weight profiles."""
    return service.criteria_data(name)


def _self(request: Request, session: Session, settings: Any, mode: str, profile: str | None) -> AssessmentRun:
    return live.live_assessment(session, request.app.state.plugins, settings, mode=mode, profile_name=profile)


@router.get("/self")
def self_assessment(request: Request, session: SessionDep, settings: SettingsDep, who: AnalystDep,
                    mode: ModeQ = "conservative", profile: ProfileQ = None,
                    format: FormatQ = "json") -> Response:  # noqa: A002
    """The live self-assessment of this deployment, from every module's inventory and the party registry."""
    return report_response(_self(request, session, settings, mode, profile), format)


@router.get("/self/manifest")
def self_manifest(request: Request, session: SessionDep, settings: SettingsDep, who: AnalystDep) -> dict[str, Any]:
    """The manifest the self-assessment scores: edit it (add evidence, substitutes) and run it."""
    manifest = live.live_manifest(session, request.app.state.plugins, settings)
    data: dict[str, Any] = json.loads(manifest.model_dump_json(exclude_defaults=True))
    return data


@router.get("/self/explain")
def self_explain(request: Request, session: SessionDep, settings: SettingsDep, who: AnalystDep,
                 key: Annotated[str, Query(description="score, gate, gaps, pressures.X, layers.X, objectives.X")],
                 mode: ModeQ = "conservative", profile: ProfileQ = None) -> dict[str, Any]:
    """One figure of the self-assessment expanded into the answers and evidence behind it."""
    return service.explain(_self(request, session, settings, mode, profile).assessment, key)
