"""Clearly synthetic compute-exchange demo: three providers, a subsidy programme, a reviewed and allocated
round, accepted allocations with usage, a fast-track request, and a cut-off drill's dry run."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sovstack.compute import allocations, cutoff, programmes, providers, rounds, usage
from sovstack.compute.schemas import (
    AllocationDecision,
    Caps,
    CutoffCreate,
    OfferCreate,
    ProgrammeCreate,
    ProviderCreate,
    RequestCreate,
    ReviewCreate,
    RoundCreate,
    UsageCreate,
)
from sovstack.compute.tables import Programme
from sovstack.core import identity
from sovstack.core.base import utcnow
from sovstack.core.context import Principal
from sovstack.core.plugins import DemoContext

PROGRAMME = "demo-common-compute"
SEEDER = Principal.system("demo")
# (provider, party, datacentre, control plane ("HOME" = the deployment's), staff organisation key)
PROVIDERS = [
    ("DomesticCloud GPU (synthetic)", "Synthetic DomesticCloud Pvt Ltd", "HOME", "HOME", "provider"),
    ("Hyperscaler Local GPU (synthetic)", "Demo Hyperscaler Local Ltd", "HOME", "US", None),
    ("EuroCloud GPU (synthetic)", "Synthetic EuroCloud SAS", "FR", "FR", None),
]
# (provider index, GPU type, GPUs, price per GPU-hour, delivery)
OFFERS = [(0, "H100", 64, 140.0, "delivered"), (0, "MI300X", 32, 120.0, "delivered"),
          (1, "H100", 48, 150.0, "delivered"), (1, "H200", 32, 190.0, "delivered"),
          (2, "L40S", 32, 60.0, "delivered"), (0, "H200", 128, 175.0, "committed")]
# (organisation key, title, GPU types, GPUs per job, GPU-hours, window, classification, scores)
REQUESTS = [
    ("university", "Fine-tune a speech model for 8 synthetic dialects", "H100,H200", 16, 8_000, (0, 5), "open", (8, 9)),
    ("startup", "Pre-train a 3B model on a synthetic multilingual corpus", "H100,H200,MI300X", 32, 40_000, (0, 11),
     "open", (7, 6)),
    ("university", "Clinical summarisation on sensitive records (synthetic)", "H100", 8, 4_000, (1, 8), "sensitive",
     (9, 8)),
    ("startup", "Evaluate OCR on scanned forms (synthetic)", "L40S,H100", 4, 1_500, (0, 11), "restricted", (5, 6)),
    ("ministry", "Crop-yield forecasting with satellite tiles (synthetic)", "H100,MI300X", 16, 12_000, (2, 11),
     "restricted", (6,)),
    ("university", "Retrieval benchmark for regional languages", "L40S", 8, 3_000, (0, 11), "open", (4, 5)),
    ("startup", "Large-context translation model (synthetic)", "H200", 32, 30_000, (0, 7), "open", (5, 5)),
    # Sensitive data on H200s: only the foreign-controlled provider has delivered H200s, so it is not placed.
    ("university", "Health-records LLM on H200s (synthetic)", "H200", 16, 10_000, (0, 11), "sensitive", (8, 7)),
]


def _principal(session: Session, key: str, ctx: DemoContext) -> Principal:
    return identity.principal_for(session, identity.get_user(session, ctx.users[key]))


def seed(session: Session, ctx: DemoContext) -> None:
    if session.scalar(select(Programme).where(Programme.name == PROGRAMME)) is not None:
        return
    home, start = ctx.home, utcnow().date() - timedelta(days=utcnow().date().weekday() + 21)
    made = []
    for name, party, dc, cp, org in PROVIDERS:
        made.append(providers.create_provider(session, SEEDER, ProviderCreate(
            name=name, party=party, organisation=identity.get_organisation(session, ctx.organisations[org]).name
            if org else None, datacentre_jurisdiction=home if dc == "HOME" else dc,
            control_plane_jurisdiction=home if cp == "HOME" else cp)))
    for idx, gpu, count, price, delivery in OFFERS:
        providers.create_offer(session, SEEDER, OfferCreate(
            provider=made[idx].name, gpu_type=gpu, gpu_count=count, price=price, available_from=start,
            available_until=start + timedelta(days=7 * 12 - 1), delivery=delivery,
            benchmark="Synthetic MLPerf-style acceptance run" if delivery == "delivered" else ""))
    programmes.create_programme(session, SEEDER, ProgrammeCreate(
        name=PROGRAMME, title="Common compute for AI (synthetic demo)", currency="INR", budget=12_000_000,
        subsidy_rate=0.4, category_rates={"startup": 0.5}, eligible_kinds=["government", "academic", "startup"],
        fast_track_gpu_hours=500, caps=Caps(provider=0.6, group=0.6, foreign=0.5, chip_vendor=0.9), start=start,
        periods=12, idle_days=14), home)
    programmes.open_round(session, SEEDER, PROGRAMME, RoundCreate(review_deadline=start + timedelta(days=14)))
    _apply_and_review(session, ctx)
    rnd = rounds.allocate_round(session, SEEDER, PROGRAMME, home)
    _providers_act(session, ctx, start)
    _fast_track(session, ctx)
    _drill(session, home)
    res = rnd.result
    ctx.say(f"compute: 3 providers, 6 offers, programme {PROGRAMME} with {res['requests']} reviewed requests; "
            f"{res['placements']} placed by {res['solver']} (proven gap {res['gap']:.2%}); "
            f"try `sovstack compute requests` and `sovstack compute cutoff --provider "
            f"'{PROVIDERS[0][0]}' --dry-run`")


def _apply_and_review(session: Session, ctx: DemoContext) -> None:
    applicant = {"university": "member", "startup": "member", "ministry": "orgadmin"}
    for org_key, title, gpus, per_job, hours, (first, last), level, scores in REQUESTS:
        who = _principal(session, applicant[org_key], ctx)
        org = identity.get_organisation(session, ctx.organisations[org_key])
        request = rounds.submit(session, who, RequestCreate(
            programme=PROGRAMME, organisation=org.name, title=title, gpu_types=gpus.split(","), gpus_per_job=per_job,
            gpu_hours=hours, earliest_period=first, latest_period=last, data_classification=level,
            proposal="Synthetic proposal for the sovstack demo."), ctx.home)
        reviewers = [_principal(session, "admin", ctx)] + ([] if org_key == "ministry" else
                                                           [_principal(session, "reviewer", ctx)])
        for reviewer, score in zip(reviewers, scores, strict=False):
            programmes.score(session, reviewer, request.id, ReviewCreate(score=score, comment="Synthetic review."))


def _providers_act(session: Session, ctx: DemoContext, start: object) -> None:
    """The domestic provider accepts its allocations and reports some usage on the first."""
    staff = _principal(session, "provider", ctx)
    mine = [a for a in allocations.list_allocations(session, SEEDER, programme=PROGRAMME, status="proposed")
            if a.offer.provider.name == PROVIDERS[0][0]]
    for a in mine:
        allocations.decide(session, staff, a.id, AllocationDecision(decision="accept"), ctx.home)
    if mine:
        first = mine[0]
        day = providers.period_bounds(first.request.programme, first.start_period)[0]
        usage.report(session, staff, UsageCreate(allocation_id=first.id, gpu_hours=min(first.gpu_hours, 1_200),
                                                 day=day, reference="demo-usage-1"))


def _fast_track(session: Session, ctx: DemoContext) -> None:
    who = _principal(session, "member", ctx)
    org = identity.get_organisation(session, ctx.organisations["university"])
    rounds.submit(session, who, RequestCreate(
        programme=PROGRAMME, organisation=org.name, title="Quick ablation study (fast-track, synthetic)",
        gpu_types=["L40S", "H100"], gpus_per_job=2, gpu_hours=300, earliest_period=3, latest_period=11,
        data_classification="open"), ctx.home)


def _drill(session: Session, home: str) -> None:
    """A dry run only: the demo shows the report without leaving capacity withdrawn."""
    cutoff.run(session, SEEDER, CutoffCreate(provider=PROVIDERS[0][0], dry_run=True), home)
