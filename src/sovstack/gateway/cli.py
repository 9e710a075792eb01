"""`sovstack gateway …`: the model catalogue, cut-off drills, key and organisation policies, budgets, usage."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import typer

from sovstack.core import documents, identity
from sovstack.core.base import utcnow
from sovstack.core.cli.common import OPERATOR, JsonOpt, change, emit, emit_one, ref, say, session_of, state
from sovstack.core.errors import BadInput
from sovstack.gateway import service, usage
from sovstack.gateway.schemas import (
    BudgetSet,
    Catalogue,
    CutoffRequest,
    KeyPolicySet,
    ModelCreate,
    OrgLoggingSet,
    OrgPolicySet,
    TranscriptPublic,
)

gateway_app = typer.Typer(help="The model gateway: models, deployments, cut-offs, usage.", no_args_is_help=True)

DEPLOYMENT_COLUMNS = ["name", "model", "backend", "hosting_jurisdiction", "operator", "developer", "open_weights",
                      "licence", "priority", "withdrawn"]


@gateway_app.command("models")
def models(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Logical models and the deployments behind them."""
    with session_of(ctx) as s:
        emit([service.model_public(m) for m in service.list_models(s)],
             ["name", "language_routing", "deployments", "description"], as_json)


@gateway_app.command("add-model")
def add_model(ctx: typer.Context, name: str, description: str = "",
              language_routing: bool = typer.Option(False, help="Route by the prompt's language.")) -> None:
    """Register a logical model name."""
    with change(ctx) as s:
        service.create_model(s, OPERATOR, ModelCreate(name=name, description=description,
                                                      language_routing=language_routing))
    say(f"model {name} registered")


@gateway_app.command("deployments")
def deployments(ctx: typer.Context, model: str | None = None, as_json: bool = JsonOpt) -> None:
    """Deployments with their sovereignty facts (upstream keys are never shown)."""
    with session_of(ctx) as s:
        emit([service.public(d) for d in service.list_deployments(s, model)], DEPLOYMENT_COLUMNS, as_json)


def _load(file: Path) -> Catalogue:
    text = documents.read_text(file)
    raw = documents.load_json(text, str(file)) if file.suffix == ".json" else documents.load_yaml(text, str(file))
    return Catalogue.model_validate(raw)


@gateway_app.command("apply")
def apply(ctx: typer.Context, file: Path = typer.Argument(..., help="models.yaml (or .json)."),
          as_json: bool = JsonOpt) -> None:
    """Make the catalogue match a file: create what is missing, update what differs (idempotent)."""
    catalogue = _load(file)
    with change(ctx) as s:
        result = service.apply_catalogue(s, OPERATOR, state(ctx).settings, catalogue)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for kind in ("created", "updated", "unchanged"):
        say(f"{kind}: {', '.join(result[kind]) or '-'}")


def _cutoff_request(jurisdiction: str | None, party: str | None, reason: str) -> CutoffRequest:
    return CutoffRequest(jurisdiction=jurisdiction, party=party, reason=reason)


@gateway_app.command("cutoff")
def cutoff(ctx: typer.Context, jurisdiction: str | None = None, party: str | None = None,
           reason: str = typer.Option("cut-off drill", help="Recorded with the withdrawal.")) -> None:
    """Withdraw every deployment touching a jurisdiction or a party; traffic moves at once."""
    with change(ctx) as s:
        affected = service.cutoff(s, OPERATOR, _cutoff_request(jurisdiction, party, reason))
    say(f"withdrawn: {', '.join(d.name for d in affected) or 'none'}")


@gateway_app.command("restore")
def restore(ctx: typer.Context, jurisdiction: str | None = None, party: str | None = None) -> None:
    """Undo a cut-off."""
    with change(ctx) as s:
        affected = service.restore(s, OPERATOR, _cutoff_request(jurisdiction, party, "restore"))
    say(f"restored: {', '.join(d.name for d in affected) or 'none'}")


@gateway_app.command("key-policy")
def key_policy(ctx: typer.Context, key: str = typer.Argument(..., help="Key prefix, sk-xxxxxxxx."),
               default: str | None = typer.Option(None, help="open|restricted|sensitive [default: the floor]"),
               floor: str | None = typer.Option(None, help="Lowest classification a request may claim "
                                                "[default: open; its organisation's floor binds anyway]."),
               rpm: int | None = typer.Option(None, help="Requests per minute.")) -> None:
    """Set a key's default classification, floor and rate limit (stricter than its organisation's, never looser)."""
    given = {"default_classification": default or floor, "floor_classification": floor, "requests_per_minute": rpm}
    data = KeyPolicySet(**{k: v for k, v in given.items() if v is not None})
    with change(ctx) as s:
        service.set_key_policy(s, OPERATOR, key, data)
    say(f"{key}: default {data.default_classification}, floor {data.floor_classification}, "
        f"{rpm or 'no'} requests-per-minute limit")


@gateway_app.command("org-policy")
def org_policy_cmd(ctx: typer.Context, organisation: str,
                   floor: str = typer.Option("open", help="Lowest classification of any call for the "
                                             "organisation: open|restricted|sensitive."),
                   rpm_per_person: int | None = typer.Option(None, min=1, help="Requests per minute per person, "
                                                             "across all their keys."),
                   tokens_per_person: int | None = typer.Option(None, min=0, help="Tokens per person per period, "
                                                                "across all their keys."),
                   period: str = typer.Option("month", help="day|month, for --tokens-per-person."),
                   as_json: bool = JsonOpt) -> None:
    """Set what binds every gateway call made for an organisation, whichever of its members' keys makes it."""
    data = OrgPolicySet(floor_classification=floor, requests_per_minute_per_person=rpm_per_person,
                        tokens_per_person=tokens_per_person, tokens_period=period)
    with change(ctx) as s:
        org = identity.get_organisation(s, ref(organisation))
        service.set_org_policy(s, OPERATOR, org.id, data)
        shown = service.org_policy(s, OPERATOR, org.id)
    emit_one(shown, as_json)


@gateway_app.command("limits")
def limits_cmd(ctx: typer.Context, organisation: str, as_json: bool = JsonOpt) -> None:
    """Show an organisation's gateway policy, budget and transcript logging: what binds its members' calls."""
    with session_of(ctx) as s:
        shown = service.org_policy(s, OPERATOR, identity.get_organisation(s, ref(organisation)).id)
    emit_one(shown, as_json)


@gateway_app.command("budget")
def budget(ctx: typer.Context, organisation: str, tokens: int = typer.Option(..., min=0),
           period: str = typer.Option("month", help="day|month")) -> None:
    """Set an organisation's token budget per period."""
    with change(ctx) as s:
        org = identity.get_organisation(s, ref(organisation))
        service.set_budget(s, OPERATOR, BudgetSet(organisation_id=org.id, tokens=tokens,
                                                  period=period))
    say(f"{org.name}: {tokens} tokens per {period}")


@gateway_app.command("logging")
def logging_cmd(ctx: typer.Context, organisation: str,
                enable: bool = typer.Option(..., "--enable/--disable", help="Keep prompts and completions?"),
                retention_days: int = typer.Option(30, min=1, max=3650)) -> None:
    """Opt an organisation in to (or out of) keeping prompts and completions for a retention period."""
    with change(ctx) as s:
        org = identity.get_organisation(s, ref(organisation))
        service.set_org_logging(s, OPERATOR, org.id, OrgLoggingSet(enabled=enable, retention_days=retention_days))
    say(f"{org.name}: prompts and completions " + (f"kept {retention_days} days" if enable else "not kept"))


@gateway_app.command("transcripts")
def transcripts_cmd(ctx: typer.Context, organisation: str,
                    limit: int = typer.Option(20, min=1, max=1000),
                    model: str | None = typer.Option(None, help="Only this logical model."),
                    purge: bool = typer.Option(False, "--purge", help="Delete them all now instead."),
                    as_json: bool = JsonOpt) -> None:
    """Read (or purge) an organisation's kept prompts and completions; every read is audited."""
    with change(ctx) as s:
        org = identity.get_organisation(s, ref(organisation))
        if purge:
            deleted = service.purge_transcripts(s, OPERATOR, org.id)
        else:
            rows = [TranscriptPublic.model_validate(t) for t in
                    service.list_transcripts(s, OPERATOR, org.id, limit=limit, model=model)]
    if purge:
        say(f"{org.name}: {deleted} transcripts deleted")
        return
    emit(rows, ["id", "at", "model", "deployment", "key_prefix", "request", "response"], as_json,
         title=f"{org.name}: kept transcripts, newest first")


@gateway_app.command("usage")
def usage_cmd(ctx: typer.Context, by: str = typer.Option("model", help="organisation|model|deployment|key"),
              days: int = typer.Option(30, min=1, max=366), as_json: bool = JsonOpt) -> None:
    """Requests, tokens, cost and errors, grouped."""
    if by not in usage.GROUPS:
        raise BadInput(f"--by must be one of {', '.join(usage.GROUPS)}", field="by")
    with session_of(ctx) as s:
        rep = usage.report(s, OPERATOR, by=by, since=utcnow() - timedelta(days=days))
    emit(rep.rows, ["group", "requests", "tokens_in", "tokens_out", "cost", "errors", "p50_latency_ms"], as_json,
         title=f"usage by {by}, last {days} days")
