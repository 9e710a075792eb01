"""`sovstack compute …`: providers, offers, programmes, requests, reviews, rounds, usage, invoices, cut-off drills.

Commands act as the local operator, or with ``--as EMAIL`` as that user, with that user's roles only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
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
from sovstack.core.cli.common import OPERATOR, JsonOpt, acting_as, emit, emit_one, say, session_of, state
from sovstack.core.context import Principal, unit_of_work

compute_app = typer.Typer(help="The compute exchange: providers, offers, programmes, requests, allocation rounds, "
                               "usage, invoices and cut-off drills.", no_args_is_help=True)
AsOpt = typer.Option(None, "--as", help="Act as this user (email) with their roles, instead of the operator.")


def _who(s: Session, as_user: str | None) -> Principal:
    return OPERATOR if as_user is None else acting_as(s, as_user)


def _home(ctx: typer.Context) -> str:
    return state(ctx).settings.home_jurisdiction


# Supply ----------------------------------------------------------------------------------------

@compute_app.command("providers")
def list_providers(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Empanelled providers with their jurisdictions and whether they are foreign-controlled."""
    with session_of(ctx) as s:
        rows = [providers.provider_public(p, _home(ctx)) for p in providers.list_providers(s)]
    emit(rows, ["name", "party", "jurisdiction", "parent_jurisdiction", "datacentre_jurisdiction",
                "control_plane_jurisdiction", "corporate_group", "foreign_controlled", "offers"], as_json)


@compute_app.command("provider-add")
def add_provider(ctx: typer.Context, name: str, party: str = typer.Option(...),
                 datacentre: str = typer.Option(..., help="Where its data centres are (ISO code)."),
                 control_plane: str = typer.Option(..., help="Where it is operated from (ISO code)."),
                 organisation: str | None = typer.Option(None, help="Member organisation of its staff."),
                 group: str = typer.Option("", help="Corporate group; defaults to the party's ultimate parent."),
                 as_json: bool = JsonOpt) -> None:
    """Empanel a provider (a registered party)."""
    data = ProviderCreate(name=name, party=party, organisation=organisation, corporate_group=group,
                          datacentre_jurisdiction=datacentre, control_plane_jurisdiction=control_plane)
    with session_of(ctx) as s, unit_of_work(s, OPERATOR):
        out = providers.provider_public(providers.create_provider(s, OPERATOR, data), _home(ctx))
    emit_one(out, as_json)


@compute_app.command("offers")
def list_offers(ctx: typer.Context, provider: str | None = None, as_json: bool = JsonOpt) -> None:
    """Offers: GPU type, count, price per GPU-hour, window, and whether delivered or only committed."""
    with session_of(ctx) as s:
        rows = [providers.offer_public(o, _home(ctx)) for o in providers.list_offers(s, provider=provider)]
    emit(rows, ["id", "provider", "gpu_type", "chip_vendor", "gpu_count", "price", "available_from",
                "available_until", "delivery", "withdrawn"], as_json)


@compute_app.command("offer-add")
def add_offer(ctx: typer.Context, provider: str = typer.Option(...), gpu_type: str = typer.Option(...),
              gpus: int = typer.Option(..., help="GPUs available in each period of the window."),
              price: float = typer.Option(..., help="Per GPU-hour."),
              available_from: str = typer.Option(..., "--from", help="YYYY-MM-DD"),
              until: str = typer.Option(..., help="YYYY-MM-DD (inclusive)"),
              delivery: str = typer.Option("delivered", help="delivered|committed"),
              benchmark: str = typer.Option("", help="Evidence that delivered capacity was benchmarked."),
              chip_vendor: str = "", as_user: str | None = AsOpt, as_json: bool = JsonOpt) -> None:
    """Publish an offer (the operator, or the provider's own staff with --as)."""
    data = OfferCreate.model_validate({"provider": provider, "gpu_type": gpu_type, "gpu_count": gpus, "price": price,
                                       "available_from": available_from, "available_until": until,
                                       "delivery": delivery, "benchmark": benchmark, "chip_vendor": chip_vendor})
    with session_of(ctx) as s:
        who = _who(s, as_user)
        with unit_of_work(s, who):
            out = providers.offer_public(providers.create_offer(s, who, data), _home(ctx))
    emit_one(out, as_json)


# Programmes and rounds -------------------------------------------------------------------------

@compute_app.command("programmes")
def list_programmes(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Subsidy programmes."""
    with session_of(ctx) as s:
        rows = [programmes.programme_public(p) for p in programmes.list_programmes(s)]
    emit(rows, ["name", "title", "currency", "budget", "subsidy_rate", "fast_track_gpu_hours", "start", "periods"],
         as_json)


@compute_app.command("programme-add")
def add_programme(ctx: typer.Context, name: str, title: str = typer.Option(...), budget: float = typer.Option(...),
                  rate: float = typer.Option(0.4, help="Subsidy rate, e.g. 0.4."),
                  start: str = typer.Option(..., help="YYYY-MM-DD"), periods: int = typer.Option(12),
                  currency: str = "INR", fast_track: float = typer.Option(0, help="GPU-hours approved by rule."),
                  cap_provider: float | None = 0.4, cap_group: float | None = 0.5, cap_foreign: float | None = 0.5,
                  cap_chip_vendor: float | None = 0.8,
                  kinds: str = typer.Option("government,academic,startup", help="Eligible organisation kinds."),
                  as_json: bool = JsonOpt) -> None:
    """Create a subsidy programme with its budget, rate, fast-track size and concentration caps."""
    data = ProgrammeCreate.model_validate({
        "name": name, "title": title, "budget": budget, "subsidy_rate": rate, "start": start, "periods": periods,
        "currency": currency, "fast_track_gpu_hours": fast_track, "eligible_kinds": kinds.split(","),
        "caps": Caps(provider=cap_provider, group=cap_group, foreign=cap_foreign, chip_vendor=cap_chip_vendor)})
    with session_of(ctx) as s, unit_of_work(s, OPERATOR):
        out = programmes.programme_public(programmes.create_programme(s, OPERATOR, data, _home(ctx)))
    emit_one(out, as_json)


@compute_app.command("round-open")
def round_open(ctx: typer.Context, programme: str, deadline: str = typer.Option(..., help="Review deadline."),
               as_json: bool = JsonOpt) -> None:
    """Open a review round; requests submitted now join it."""
    data = RoundCreate.model_validate({"review_deadline": deadline})
    with session_of(ctx) as s, unit_of_work(s, OPERATOR):
        out = programmes.round_public(s, programmes.open_round(s, OPERATOR, programme, data))
    emit_one(out, as_json)


@compute_app.command("allocate")
def allocate(ctx: typer.Context, programme: str, as_json: bool = JsonOpt) -> None:
    """Solve the open round (or re-solve the newest) and publish the allocation with its proven gap."""
    with session_of(ctx) as s, unit_of_work(s, OPERATOR):
        rnd = rounds.allocate_round(s, OPERATOR, programme, _home(ctx))
        out = programmes.round_public(s, rnd)
    if as_json:
        emit_one(out, True)
        return
    res = out.result
    say(f"round {out.number}: {res['status']} by {res['solver']} in {res['seconds']} s; objective "
        f"{res['objective']:,.0f}, bound {res['bound']:,.0f}, proven gap {res['gap']:.2%} "
        f"(greedy {res['greedy_objective']:,.0f}); {res['placements']} of {res['requests']} requests placed")
    for line in res.get("conflicts", []):
        say(f"conflict: {line}")
    if res["status"] == "infeasible":
        raise typer.Exit(1)


@compute_app.command("rounds")
def list_rounds(ctx: typer.Context, programme: str, as_json: bool = JsonOpt) -> None:
    """A programme's rounds and their published results."""
    with session_of(ctx) as s:
        rows = [programmes.round_public(s, r) for r in programmes.list_rounds(s, programme)]
    emit([{**r.model_dump(mode="json"), "gap": r.result.get("gap"), "solver": r.result.get("solver")} for r in rows],
         ["number", "status", "review_deadline", "requests", "reviewed", "solver", "gap"], as_json)


@compute_app.command("dashboard")
def dashboard(ctx: typer.Context, programme: str) -> None:
    """Budget burn, shares per provider/group/foreign/chip vendor against the caps, utilisation (JSON)."""
    with session_of(ctx) as s:
        emit_one(usage.dashboard(s, programme, _home(ctx)), True)


# Requests and reviews --------------------------------------------------------------------------

@compute_app.command("requests")
def list_requests(ctx: typer.Context, programme: str | None = None, status: str | None = None,
                  as_user: str | None = AsOpt, as_json: bool = JsonOpt) -> None:
    """Requests with their status, merit and the explanation of their allocation."""
    with session_of(ctx) as s:
        rows = [programmes.request_public(r)
                for r in programmes.list_requests(s, _who(s, as_user), programme=programme, status=status)]
    emit([{**r.model_dump(mode="json"), "why": r.explanation.get("text", "")} for r in rows],
         ["id", "organisation", "title", "gpu_hours", "status", "merit", "why"], as_json)


@compute_app.command("apply")
def apply_cmd(ctx: typer.Context, programme: str, title: str = typer.Option(...),
              organisation: str = typer.Option(...), gpu_types: str = typer.Option(..., help="e.g. H100,H200"),
              gpus_per_job: int = typer.Option(...), gpu_hours: float = typer.Option(...),
              earliest: int = 0, latest: int = typer.Option(...),
              data_classification: str = typer.Option("open", help="open|restricted|sensitive"),
              proposal: str = "", as_user: str = typer.Option(..., "--as", help="The applicant (email)."),
              as_json: bool = JsonOpt) -> None:
    """Submit a request for GPU-hours as a member of an organisation."""
    data = RequestCreate.model_validate({
        "programme": programme, "organisation": organisation, "title": title, "proposal": proposal,
        "gpu_types": gpu_types.split(","), "gpus_per_job": gpus_per_job, "gpu_hours": gpu_hours,
        "earliest_period": earliest, "latest_period": latest, "data_classification": data_classification})
    with session_of(ctx) as s:
        who = _who(s, as_user)
        with unit_of_work(s, who):
            out = programmes.request_public(rounds.submit(s, who, data, _home(ctx)))
    emit_one(out, as_json)


@compute_app.command("queue")
def queue(ctx: typer.Context, as_user: str = typer.Option(..., "--as", help="The reviewer (email)."),
          as_json: bool = JsonOpt) -> None:
    """Requests this reviewer may score (never their own organisation's)."""
    with session_of(ctx) as s:
        rows = [programmes.request_public(r) for r in programmes.review_queue(s, _who(s, as_user))]
    emit(rows, ["id", "organisation", "title", "gpu_hours", "reviews"], as_json)


@compute_app.command("review")
def review(ctx: typer.Context, request_id: int, score: float = typer.Option(..., help="1–10"), comment: str = "",
           as_user: str = typer.Option(..., "--as", help="The reviewer (email).")) -> None:
    """Score a request's merit."""
    data = ReviewCreate(score=score, comment=comment)
    with session_of(ctx) as s:
        who = _who(s, as_user)
        with unit_of_work(s, who):
            programmes.score(s, who, request_id, data)
    say(f"scored request {request_id}: {score:g}")


# Allocations, usage, money ---------------------------------------------------------------------

@compute_app.command("allocations")
def list_allocations(ctx: typer.Context, programme: str | None = None, provider: str | None = None,
                     status: str | None = None, as_json: bool = JsonOpt) -> None:
    """Allocations with cost split into subsidy and applicant share; idle ones flagged."""
    with session_of(ctx) as s:
        rows = [allocations.allocation_public(a) for a in allocations.list_allocations(
            s, OPERATOR, programme=programme, provider=provider, status=status)]
    emit(rows, ["id", "request_id", "provider", "gpu_type", "start_period", "gpus", "gpu_hours", "used_gpu_hours",
                "subsidy", "applicant_share", "status", "idle"], as_json)


@compute_app.command("decide")
def decide(ctx: typer.Context, allocation_id: int, decision: str = typer.Argument(..., help="accept|decline"),
           reason: str = "", as_user: str | None = AsOpt) -> None:
    """Accept or decline an allocation as its provider; a decline re-solves."""
    data = AllocationDecision.model_validate({"decision": decision, "reason": reason})
    with session_of(ctx) as s:
        who = _who(s, as_user)
        with unit_of_work(s, who):
            outcome = allocations.decide(s, who, allocation_id, data, _home(ctx))
    say(f"allocation {allocation_id}: {decision}ed" + (f"; re-solved: {outcome}" if outcome else ""))


@compute_app.command("usage")
def report_usage(ctx: typer.Context, allocation_id: int, gpu_hours: float = typer.Option(...),
                 day: str = typer.Option(..., help="YYYY-MM-DD"), reference: str = typer.Option(...),
                 as_user: str | None = AsOpt, as_json: bool = JsonOpt) -> None:
    """Report GPU-hours used on an accepted allocation."""
    data = UsageCreate.model_validate({"allocation_id": allocation_id, "gpu_hours": gpu_hours, "day": day,
                                       "reference": reference})
    with session_of(ctx) as s:
        who = _who(s, as_user)
        with unit_of_work(s, who):
            out = usage.report(s, who, data)
    emit_one(out, as_json)


@compute_app.command("reclaim")
def reclaim(ctx: typer.Context, allocation_id: int) -> None:
    """Reclaim an idle allocation (accepted, unused past the programme's idle days)."""
    with session_of(ctx) as s, unit_of_work(s, OPERATOR):
        allocations.reclaim(s, OPERATOR, allocation_id)
    say(f"allocation {allocation_id} reclaimed")


@compute_app.command("invoice")
def invoice(ctx: typer.Context, programme: str, provider: str | None = None, applicant: str | None = None,
            fmt: str = typer.Option("csv", "--format", help="csv|html"),
            out: Path | None = typer.Option(None, dir_okay=False, help="File to write; standard output if absent.")
            ) -> None:
    """An invoice of used GPU-hours for a provider or an applicant, split into subsidy and applicant share."""
    with session_of(ctx) as s:
        lines = usage.invoice(s, OPERATOR, programme, provider=provider, applicant=applicant)
        prog = programmes.get_programme(s, programme)
        text = (usage.invoice_html(lines, f"{prog.title}: invoice for {provider or applicant}", prog.currency)
                if fmt == "html" else usage.invoice_csv(lines))
    if out:
        out.write_text(text, encoding="utf-8")
        say(f"wrote {out} ({len(lines)} lines)")
    else:
        typer.echo(text, nl=False)


# Cut-off drill ---------------------------------------------------------------------------------

@compute_app.command("cutoff")
def run_cutoff(ctx: typer.Context, provider: str | None = None, jurisdiction: str | None = None,
               chip_vendor: str | None = None, dry_run: bool = typer.Option(False, help="Report only."),
               as_json: bool = JsonOpt) -> None:
    """Withdraw capacity as if a provider left or an export licence were revoked, re-solve, and report."""
    data = CutoffCreate(provider=provider, jurisdiction=jurisdiction, chip_vendor=chip_vendor, dry_run=dry_run)
    with session_of(ctx) as s, unit_of_work(s, OPERATOR):
        out = cutoff.run(s, OPERATOR, data, _home(ctx))
    if as_json:
        emit_one(out, True)
        return
    _say_report(out.id, out.report, dry_run)


def _say_report(drill: int | None, report: dict[str, Any], dry_run: bool) -> None:
    say(("dry run: " if dry_run else f"cut-off drill {drill}: ")
        + f"{len(report['displaced'])} requests displaced ({report['displaced_gpu_hours']:,.0f} GPU-hours); "
        f"{report['re_placed']} re-placed; {report['lost_gpu_hours']:,.0f} GPU-hours lost; "
        f"{len(report['moved_others'])} other requests moved")
    for row in report["displaced"]:
        say(f"  request {row['request']} ({row['organisation']}) from {row['from']}: "
            + (f"re-placed on {row['re_placed']}" if row["re_placed"] else f"not re-placed — {row['why_not']}"))
    for note in report["caps_note"]:
        say(f"  {note}")
    if not dry_run:
        say(f"undo with: sovstack compute restore {drill}")


@compute_app.command("restore")
def restore(ctx: typer.Context, cutoff_id: int) -> None:
    """Undo a cut-off drill: capacity back, allocations as they were."""
    with session_of(ctx) as s, unit_of_work(s, OPERATOR):
        cutoff.restore(s, OPERATOR, cutoff_id)
    say(f"cut-off drill {cutoff_id} restored")


@compute_app.command("cutoffs")
def list_cutoffs(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Cut-off drills, newest first."""
    with session_of(ctx) as s:
        rows = [cutoff.cutoff_public(c) for c in cutoff.list_cutoffs(s, OPERATOR)]
    emit([{**r.model_dump(mode="json"), "displaced": len(r.report.get("displaced", [])),
           "lost_gpu_hours": r.report.get("lost_gpu_hours")} for r in rows],
         ["id", "selector", "value", "displaced", "lost_gpu_hours", "created_at", "restored_at"], as_json)
