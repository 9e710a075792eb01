"""HTTP API of the compute exchange under /api/v1/compute: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, status
from fastapi.responses import HTMLResponse, PlainTextResponse

from sovstack.compute import allocations, cutoff, programmes, providers, rounds, usage
from sovstack.compute.schemas import (
    AllocationDecision,
    AllocationPublic,
    CutoffCreate,
    CutoffPublic,
    OfferCreate,
    OfferPublic,
    OfferUpdate,
    ProgrammeCreate,
    ProgrammePublic,
    ProviderCreate,
    ProviderPublic,
    RequestCreate,
    RequestPublic,
    ReviewCreate,
    ReviewPublic,
    RoundCreate,
    RoundPublic,
    UsageCreate,
    UsagePublic,
)
from sovstack.core.api.deps import PrincipalDep, SessionDep, SettingsDep, scoped
from sovstack.core.context import Principal, unit_of_work

router = APIRouter(prefix="/api/v1/compute", tags=["compute"])


@router.get("/providers")
def list_providers(session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> list[ProviderPublic]:
    return [providers.provider_public(p, settings.home_jurisdiction) for p in providers.list_providers(session)]


@router.post("/providers", status_code=status.HTTP_201_CREATED)
def create_provider(body: ProviderCreate, session: SessionDep, who: PrincipalDep,
                    settings: SettingsDep) -> ProviderPublic:
    with unit_of_work(session, who):
        provider = providers.create_provider(session, who, body)
    return providers.provider_public(provider, settings.home_jurisdiction)


@router.get("/providers/{name}")
def show_provider(name: str, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> ProviderPublic:
    return providers.provider_public(providers.get_provider(session, name), settings.home_jurisdiction)


@router.get("/offers")
def list_offers(session: SessionDep, who: PrincipalDep, settings: SettingsDep,
                provider: str | None = None) -> list[OfferPublic]:
    return [providers.offer_public(o, settings.home_jurisdiction)
            for o in providers.list_offers(session, provider=provider)]


@router.post("/offers", status_code=status.HTTP_201_CREATED)
def create_offer(body: OfferCreate, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> OfferPublic:
    with unit_of_work(session, who):
        offer = providers.create_offer(session, who, body)
    return providers.offer_public(offer, settings.home_jurisdiction)


@router.patch("/offers/{offer_id}")
def update_offer(offer_id: int, body: OfferUpdate, session: SessionDep, who: PrincipalDep,
                 settings: SettingsDep) -> OfferPublic:
    with unit_of_work(session, who):
        offer = providers.update_offer(session, who, offer_id, body)
    return providers.offer_public(offer, settings.home_jurisdiction)


@router.get("/programmes")
def list_programmes(session: SessionDep, who: PrincipalDep) -> list[ProgrammePublic]:
    return [programmes.programme_public(p) for p in programmes.list_programmes(session)]


@router.post("/programmes", status_code=status.HTTP_201_CREATED)
def create_programme(body: ProgrammeCreate, session: SessionDep, who: PrincipalDep,
                     settings: SettingsDep) -> ProgrammePublic:
    with unit_of_work(session, who):
        programme = programmes.create_programme(session, who, body, settings.home_jurisdiction)
    return programmes.programme_public(programme)


@router.get("/programmes/{name}")
def show_programme(name: str, session: SessionDep, who: PrincipalDep) -> ProgrammePublic:
    return programmes.programme_public(programmes.get_programme(session, name))


@router.get("/programmes/{name}/dashboard")
def dashboard(name: str, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> dict[str, Any]:
    """Budget burn, shares against the caps, utilisation and review progress."""
    return usage.dashboard(session, name, settings.home_jurisdiction)


@router.get("/programmes/{name}/rounds")
def list_rounds(name: str, session: SessionDep, who: PrincipalDep) -> list[RoundPublic]:
    return [programmes.round_public(session, r) for r in programmes.list_rounds(session, name)]


@router.post("/programmes/{name}/rounds", status_code=status.HTTP_201_CREATED)
def open_round(name: str, body: RoundCreate, session: SessionDep, who: PrincipalDep) -> RoundPublic:
    with unit_of_work(session, who):
        rnd = programmes.open_round(session, who, name, body)
        return programmes.round_public(session, rnd)


@router.post("/programmes/{name}/allocate")
def allocate(name: str, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> RoundPublic:
    """Solve the open round (or re-solve the newest); the result carries its proven gap and explanations."""
    with unit_of_work(session, who):
        rnd = rounds.allocate_round(session, who, name, settings.home_jurisdiction)
        return programmes.round_public(session, rnd)


@router.get("/programmes/{name}/invoices", response_model=None)
def invoices(name: str, session: SessionDep, who: PrincipalDep, provider: str | None = None,
             applicant: str | None = None,
             format: Literal["json", "csv", "html"] = "json") -> Any:  # noqa: A002
    lines = usage.invoice(session, who, name, provider=provider, applicant=applicant)
    if format == "csv":
        return PlainTextResponse(usage.invoice_csv(lines), media_type="text/csv")
    if format == "html":
        programme = programmes.get_programme(session, name)
        title = f"{programme.title}: invoice for {provider or applicant}"
        return HTMLResponse(usage.invoice_html(lines, title, programme.currency))
    return [line.__dict__ for line in lines]


@router.get("/requests")
def list_requests(session: SessionDep, who: PrincipalDep, programme: str | None = None,
                  status: str | None = None) -> list[RequestPublic]:
    return [programmes.request_public(r) for r in programmes.list_requests(session, who, programme=programme,
                                                                            status=status)]


@router.post("/requests", status_code=status.HTTP_201_CREATED)
def submit(body: RequestCreate, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> RequestPublic:
    """Apply for GPU-hours; a request within the fast-track size is approved by rule and placed at once."""
    with unit_of_work(session, who):
        request = rounds.submit(session, who, body, settings.home_jurisdiction)
        return programmes.request_public(request)


@router.get("/requests/{request_id}")
def show_request(request_id: int, session: SessionDep, who: PrincipalDep) -> RequestPublic:
    return programmes.request_public(programmes.visible_request(session, who, request_id))


@router.post("/requests/{request_id}/withdraw")
def withdraw(request_id: int, session: SessionDep, who: PrincipalDep) -> RequestPublic:
    with unit_of_work(session, who):
        return programmes.request_public(programmes.withdraw_request(session, who, request_id))


@router.get("/reviews/queue")
def review_queue(session: SessionDep, who: PrincipalDep) -> list[RequestPublic]:
    with unit_of_work(session, who):
        return [programmes.request_public(r) for r in programmes.review_queue(session, who)]


@router.post("/requests/{request_id}/reviews", status_code=status.HTTP_201_CREATED)
def review(request_id: int, body: ReviewCreate, session: SessionDep, who: PrincipalDep) -> ReviewPublic:
    with unit_of_work(session, who):
        r = programmes.score(session, who, request_id, body)
        return ReviewPublic(id=r.id, request_id=r.request_id, reviewer=who.email, score=r.score, comment=r.comment,
                            created_at=r.created_at)


@router.get("/allocations")
def list_allocations(session: SessionDep, who: PrincipalDep, programme: str | None = None,
                     provider: str | None = None, status: str | None = None) -> list[AllocationPublic]:
    return [allocations.allocation_public(a) for a in allocations.list_allocations(
        session, who, programme=programme, provider=provider, status=status)]


@router.post("/allocations/{allocation_id}/decision")
def decide(allocation_id: int, body: AllocationDecision, session: SessionDep, who: PrincipalDep,
           settings: SettingsDep) -> dict[str, Any]:
    """The provider accepts or declines; a decline re-solves and says what moved."""
    with unit_of_work(session, who):
        outcome = allocations.decide(session, who, allocation_id, body, settings.home_jurisdiction)
        a = allocations.get_allocation(session, allocation_id)
        return {"allocation": allocations.allocation_public(a).model_dump(mode="json"),
                "resolved": {str(k): v for k, v in outcome.items()}}


@router.post("/allocations/{allocation_id}/reclaim")
def reclaim(allocation_id: int, session: SessionDep, who: PrincipalDep) -> AllocationPublic:
    with unit_of_work(session, who):
        return allocations.allocation_public(allocations.reclaim(session, who, allocation_id))


@router.post("/usage", status_code=status.HTTP_201_CREATED)
def report_usage(body: UsageCreate, session: SessionDep,
                 who: Annotated[Principal, scoped("compute.report")]) -> UsagePublic:
    """A provider reports GPU-hours used on an allocation it holds (API keys with the compute.report scope)."""
    with unit_of_work(session, who):
        return usage.report(session, who, body)


@router.get("/cutoffs")
def list_cutoffs(session: SessionDep, who: PrincipalDep) -> list[CutoffPublic]:
    return [cutoff.cutoff_public(c) for c in cutoff.list_cutoffs(session, who)]


@router.post("/cutoffs", status_code=status.HTTP_201_CREATED)
def run_cutoff(body: CutoffCreate, session: SessionDep, who: PrincipalDep, settings: SettingsDep) -> CutoffPublic:
    """Withdraw capacity as if a provider left (or dry-run it), re-solve, and report the damage."""
    with unit_of_work(session, who):
        return cutoff.run(session, who, body, settings.home_jurisdiction)


@router.post("/cutoffs/{cutoff_id}/restore")
def restore_cutoff(cutoff_id: int, session: SessionDep, who: PrincipalDep) -> CutoffPublic:
    with unit_of_work(session, who):
        return cutoff.restore(session, who, cutoff_id)
