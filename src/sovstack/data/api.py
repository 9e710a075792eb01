"""HTTP API of the data commons under /api/v1/data."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from sovstack.core import identity
from sovstack.core.api.deps import PrincipalDep, SessionDep, SettingsDep, VisitorDep, authenticate
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.errors import BadInput, Refused
from sovstack.core.settings import Settings
from sovstack.data import access, airlock, ingest, metadata, queries, search, service
from sovstack.data.sandbox import Limits
from sovstack.data.schemas import (
    AccessRequestCreate,
    AccessRequestPublic,
    AirlockDecision,
    AirlockSubmit,
    ColumnEdit,
    ColumnRetype,
    DatasetCreate,
    DatasetFields,
    DatasetPublic,
    GrantPublic,
    RequestDecision,
    RevokeRequest,
    SandboxQueryCreate,
    SearchResult,
    VersionPublic,
)
from sovstack.data.tables import AccessGrant, AccessRequest

router = APIRouter(prefix="/api/v1/data", tags=["data"])
ANONYMOUS = Principal(user_id=None, email="anonymous", is_admin=False, scopes=frozenset())  # for audit only
UPLOAD_ROUTE = r"/api/v1/data/datasets/[^/]+/versions"


def request_public(req: AccessRequest, requester: str = "", overdue: bool = False) -> AccessRequestPublic:
    return AccessRequestPublic(id=req.id, dataset=req.dataset.name, user_id=req.user_id, requester=requester,
                               organisation_id=req.organisation_id, purpose=req.purpose, days=req.days,
                               status=req.status, reason=req.reason, decided_by=req.decided_by,
                               decided_at=req.decided_at, created_at=req.created_at, overdue=overdue)


def grant_public(grant: AccessGrant) -> GrantPublic:
    return GrantPublic(id=grant.id, dataset=grant.dataset.name, user_id=grant.user_id, mode=grant.mode,
                       expires_at=grant.expires_at, revoked_at=grant.revoked_at, revoked_reason=grant.revoked_reason,
                       granted_by=grant.granted_by, created_at=grant.created_at, live=access.is_live(grant),
                       epsilon_budget=grant.epsilon_budget, daily_queries=grant.daily_queries)


@router.get("/datasets")
def find(session: SessionDep, who: VisitorDep, q: str = "", publisher: str | None = None,
         classification: Literal["open", "restricted", "sensitive"] | None = None, language: str | None = None,
         licence: str | None = None, format: Literal["csv", "parquet", "jsonl"] | None = None,  # noqa: A002
         limit: Annotated[int, Query(ge=1, le=200)] = 20, offset: Annotated[int, Query(ge=0)] = 0) -> SearchResult:
    """Full-text search over the catalogue's metadata, with facet counts (open data only for visitors)."""
    filters = search.Filters(publisher, classification, language, licence, format)
    found = search.find(session, q, filters, anonymous=who is None, limit=limit, offset=offset)
    return SearchResult(total=found.total, datasets=[service.public(d) for d in found.datasets], facets=found.facets)


@router.post("/datasets", status_code=status.HTTP_201_CREATED)
def create(body: DatasetCreate, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> DatasetPublic:
    with unit_of_work(session, who):
        dataset = service.create_dataset(session, who, settings, body)
    return service.public(dataset)


@router.get("/datasets/{name}")
def show(name: str, session: SessionDep, who: VisitorDep) -> DatasetPublic:
    return service.public(service.get_visible(session, who, name))


@router.put("/datasets/{name}")
def update(name: str, body: DatasetFields, session: SessionDep, who: PrincipalDep,
           settings: SettingsDep) -> DatasetPublic:
    with unit_of_work(session, who):
        dataset = service.update_dataset(session, who, settings, name, body)
    return service.public(dataset)


@router.put("/datasets/{name}/columns/{column}")
def describe_column(name: str, column: str, body: ColumnEdit, session: SessionDep, who: PrincipalDep) -> DatasetPublic:
    with unit_of_work(session, who):
        dataset = service.describe_column(session, who, name, column, body.description)
    return service.public(dataset)


@router.get("/datasets/{name}/dcat.jsonld")
def dataset_dcat(name: str, request: Request, session: SessionDep, who: VisitorDep) -> JSONResponse:
    """The dataset as DCAT-AP (JSON-LD)."""
    dataset = service.get_visible(session, who, name)
    return JSONResponse(metadata.dcat(dataset, _base(request)), media_type="application/ld+json")


@router.get("/datasets/{name}/croissant.json")
def dataset_croissant(name: str, request: Request, session: SessionDep, who: VisitorDep) -> JSONResponse:
    """The dataset as Croissant 1.0 (JSON-LD), for ML tools."""
    dataset = service.get_visible(session, who, name)
    return JSONResponse(metadata.croissant(dataset, _base(request)), media_type="application/ld+json")


@router.get("/catalogue.jsonld")
def catalogue_dcat(request: Request, session: SessionDep, who: VisitorDep, settings: SettingsDep) -> JSONResponse:
    """The whole catalogue as a DCAT-AP dcat:Catalog, for harvesting by other portals (visitors: open data)."""
    datasets = [d for d in service.all_datasets(session) if service.visible(d, who)]
    return JSONResponse(metadata.dcat_catalogue(datasets, _base(request), settings.deployment_name),
                        media_type="application/ld+json")


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.post("/datasets/{name}/columns/{column}/type", status_code=status.HTTP_201_CREATED)
def retype_column(name: str, column: str, body: ColumnRetype, session: SessionDep, who: PrincipalDep,
                  settings: SettingsDep) -> VersionPublic:
    """Correct an inferred type: a new version, cast from the current one; refused if any value does not convert."""
    with unit_of_work(session, who):
        version = service.retype_column(session, who, settings, name, column, body.type)
        return service.version_public(version)


@router.get("/datasets/{name}/versions")
def versions(name: str, session: SessionDep, who: PrincipalDep) -> list[VersionPublic]:
    return [service.version_public(v) for v in service.versions(session, who, name)]


async def _receive_upload(request: Request, settings: Settings) -> Path:
    """Stream the request body to a file under objects/tmp, never holding it in memory."""
    path = ingest.staging(settings.home / "objects") / f"upload-{uuid.uuid4().hex}"
    try:
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
    except ClientDisconnect as exc:
        path.unlink(missing_ok=True)
        raise BadInput("the upload was cut off before its end; nothing was published", field="file") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@router.post("/datasets/{name}/versions", status_code=status.HTTP_201_CREATED)
async def publish(name: str, request: Request,
                  format: Literal["csv", "parquet", "jsonl"] | None = None,  # noqa: A002  (checked after auth)
                  note: Annotated[str, Query(max_length=500)] = "",
                  delimiter: Annotated[str | None, Query(min_length=1, max_length=1, description=(
                      "CSV: the field delimiter; default: whichever of , ; TAB | the header line holds most."))] = None,
                  encoding: Literal["utf-8", "latin-1"] = "utf-8",
                  allow_ragged_rows: Annotated[bool, Query(description=(
                      "CSV: publish rows whose number of fields differs from the header's, as text (refused "
                      "otherwise, naming the lines)."))] = False,
                  allow_schema_change: bool = False) -> VersionPublic:
    """Upload a new version as the raw request body (streamed); it becomes current once converted."""
    settings: Settings = request.app.state.settings

    def allowed() -> Principal:  # refuse before reading a byte of the body
        with request.app.state.db.session() as session:
            who = authenticate(request, session)
            if not who.has_scope("write"):
                raise Refused("this API key lacks the write scope", action="data.version.publish")
            dataset = service.get_dataset(session, name)
            who.require_role(dataset.publisher_id, *service.STEWARDS, action="data.version.publish",
                             target=f"dataset:{name}")
            return who

    who = await run_in_threadpool(allowed)
    if format is None:
        raise BadInput("say the file's format: ?format=csv|parquet|jsonl", field="format")
    source = await _receive_upload(request, settings)

    def work() -> VersionPublic:
        with request.app.state.db.session() as session, unit_of_work(session, who):
            version = service.publish_version(session, who, settings, name, source, format, note=note,
                                              csv=ingest.CsvOptions(delimiter, encoding, allow_ragged_rows),
                                              allow_schema_change=allow_schema_change)
            return service.version_public(version)

    try:
        return await run_in_threadpool(work)
    finally:
        source.unlink(missing_ok=True)


@router.get("/datasets/{name}/download")
def download(name: str, session: SessionDep, who: VisitorDep, settings: SettingsDep,
             version: Annotated[int | None, Query(ge=1)] = None) -> FileResponse:
    """The Parquet file of a version, if the caller may take the data away now (audited either way)."""
    with unit_of_work(session, who or ANONYMOUS):
        path, dataset, number = access.download(session, who, settings, name, version)
    return FileResponse(path, media_type="application/vnd.apache.parquet",
                        filename=f"{dataset.name}-v{number}.parquet")


@router.post("/datasets/{name}/requests", status_code=status.HTTP_201_CREATED)
def request_access(name: str, body: AccessRequestCreate, session: SessionDep, who: PrincipalDep,
                   settings: SettingsDep) -> AccessRequestPublic:
    with unit_of_work(session, who):
        req = access.request_access(session, who, settings, name, body)
    return request_public(req, who.email)


@router.get("/datasets/{name}/grants")
def dataset_grants(name: str, session: SessionDep, who: PrincipalDep) -> list[GrantPublic]:
    return [grant_public(g) for g in access.grants_of(session, who, name)]


@router.get("/requests/inbox")
def inbox(session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> list[AccessRequestPublic]:
    """Pending requests for the datasets you steward; ``overdue`` past the configured wait."""
    return [request_public(r, _email(session, r.user_id), late) for r, late in access.inbox(session, who, settings)]


@router.get("/requests/mine")
def my_requests(session: SessionDep, who: PrincipalDep) -> list[AccessRequestPublic]:
    return [request_public(r, who.email) for r in access.my_requests(session, who)]


@router.post("/requests/{request_id}/decision")
def decide(request_id: int, body: RequestDecision, session: SessionDep, who: PrincipalDep,
           settings: SettingsDep) -> dict[str, AccessRequestPublic | GrantPublic | None]:
    with unit_of_work(session, who):
        req, grant = access.decide(session, who, settings, request_id, body)
    return {"request": request_public(req, _email(session, req.user_id)),
            "grant": grant_public(grant) if grant else None}


@router.post("/sandbox/queries")
def sandbox_query(body: SandboxQueryCreate, session: SessionDep, who: PrincipalDep,
                  settings: SettingsDep) -> dict[str, Any]:
    """Run SQL over the datasets you may use, locked down; sensitive data in aggregate, disclosure-controlled."""
    limits = Limits(max_rows=body.max_rows, seconds=settings.sandbox_seconds)
    outcome = queries.run(session, who, settings, body.sql, limits, body.epsilon, body.delta)
    return queries.result_public(outcome)


@router.get("/datasets/{name}/budget")
def my_budget(name: str, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    """Your privacy budget on a sensitive dataset: its cap, what you have spent, what remains."""
    return queries.my_budget(session, who, name)


@router.get("/sandbox/queries")
def sandbox_history(session: SessionDep, who: PrincipalDep,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    """Your queries, newest first."""
    return [queries.public(q) for q in queries.history(session, who, limit)]


@router.get("/datasets/{name}/queries")
def dataset_queries(name: str, session: SessionDep, who: PrincipalDep,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100,
                    before: Annotated[int | None, Query(ge=1, description="Page on: the oldest id seen.")] = None,
                    ) -> list[dict[str, Any]]:
    """The sandbox queries that named the dataset, newest first, paginated (its stewards only)."""
    return [queries.public(q) for q in queries.on_dataset(session, who, name, limit, before)]


@router.post("/airlock", status_code=status.HTTP_201_CREATED)
def airlock_submit(body: AirlockSubmit, request: Request, session: SessionDep, who: PrincipalDep,
                   settings: SettingsDep) -> dict[str, Any]:
    """Submit an aggregate query on sensitive data for an exact result, held for a steward's output check.

    It runs in the background (the reply is the same whatever the data holds); you see the rows once a
    steward releases them."""
    held = airlock.submit(session, who, settings, body.sql, body.purpose, Limits(seconds=settings.sandbox_seconds),
                          background=request.app.state.db)
    return airlock.public(session, held, reviews=False)


@router.get("/airlock")
def airlock_list(session: SessionDep, who: PrincipalDep, view: Literal["mine", "review"] = "mine",
                 status: Literal["held", "released", "refused"] | None = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50,
                 before: Annotated[int | None, Query(ge=1, description="Page on: the oldest id seen.")] = None,
                 ) -> list[dict[str, Any]]:
    """Your airlock requests (``mine``), or those waiting on datasets you steward (``review``)."""
    return [airlock.public(session, held, reviews=view == "review")
            for held in airlock.listing(session, who, view, status, limit, before)]


@router.get("/airlock/{request_id}")
def airlock_show(request_id: int, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    """One airlock request: exact rows and output check for its reviewer, released rows for its requester."""
    held, reviews = airlock.get(session, who, request_id)
    return airlock.public(session, held, reviews)


@router.post("/airlock/{request_id}/decision")
def airlock_decide(request_id: int, body: AirlockDecision, session: SessionDep, who: PrincipalDep) -> dict[str, Any]:
    """Release the checked result (suppression applied) or refuse it with a reason; never the requester."""
    with unit_of_work(session, who):
        held = airlock.decide(session, who, request_id, body.release, body.reason)
    return airlock.public(session, held, reviews=True)


@router.get("/grants/mine")
def my_grants(session: SessionDep, who: PrincipalDep) -> list[GrantPublic]:
    return [grant_public(g) for g in access.my_grants(session, who)]


@router.post("/grants/{grant_id}/revoke")
def revoke(grant_id: int, body: RevokeRequest, session: SessionDep, who: PrincipalDep) -> GrantPublic:
    with unit_of_work(session, who):
        grant = access.revoke(session, who, grant_id, body.reason)
    return grant_public(grant)


def _email(session: Session, user_id: int) -> str:
    return identity.get_user(session, user_id).email
