"""`sovstack gateway …`: the model catalogue, cut-off drills, key and organisation policies, budgets, usage."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import typer

from sovstack import __version__
from sovstack.core import documents, identity
from sovstack.core.base import utcnow
from sovstack.core.cli.common import OPERATOR, JsonOpt, change, emit, emit_one, ref, say, session_of, state
from sovstack.core.errors import BadInput
from sovstack.gateway import budgets, exits, service, stored, usage
from sovstack.gateway.cache import AnswerCache, store_for
from sovstack.gateway.metering import counters_for
from sovstack.gateway.schemas import (
    AlertPublic,
    BudgetSet,
    Catalogue,
    CutoffRequest,
    KeyPolicySet,
    ModelCreate,
    OrgCacheSet,
    OrgLoggingSet,
    OrgPolicySet,
    OrgResponsesSet,
    SpendBudgetSet,
    TranscriptPublic,
)

gateway_app = typer.Typer(help="The model gateway: models, deployments, cut-offs, usage.", no_args_is_help=True)

DEPLOYMENT_COLUMNS = ["name", "model", "backend", "hosting_jurisdiction", "operator", "developer", "open_weights",
                      "licence", "priority", "withdrawn", "enabled", "circuit", "circuit_detail"]


@gateway_app.command("models")
def models(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Logical models and the deployments behind them."""
    with session_of(ctx) as s:
        emit([service.model_public(m) for m in service.list_models(s)],
             ["name", "enabled", "language_routing", "deployments", "description"], as_json)


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
    """Deployments with their sovereignty facts and circuits as the servers report them (upstream keys are
    never shown)."""
    with session_of(ctx) as s:
        emit(service.deployments_public(s, model), DEPLOYMENT_COLUMNS, as_json)


@gateway_app.command("disable-deployment")
def disable_deployment(ctx: typer.Context, name: str) -> None:
    """Take one deployment out of routing: calls go to the model's other deployments (audited)."""
    with change(ctx) as s:
        service.set_deployment_enabled(s, OPERATOR, name, False)
    say(f"deployment {name} disabled")


@gateway_app.command("enable-deployment")
def enable_deployment(ctx: typer.Context, name: str) -> None:
    """Put a disabled deployment back into routing."""
    with change(ctx) as s:
        service.set_deployment_enabled(s, OPERATOR, name, True)
    say(f"deployment {name} enabled")


@gateway_app.command("delete-deployment")
def delete_deployment(ctx: typer.Context, name: str) -> None:
    """Delete a deployment; its usage history is kept."""
    with change(ctx) as s:
        service.delete_deployment(s, OPERATOR, name)
    say(f"deployment {name} deleted")


@gateway_app.command("disable-model")
def disable_model(ctx: typer.Context, name: str) -> None:
    """Hide a model from /v1/models and refuse calls to it; its deployments are kept."""
    with change(ctx) as s:
        service.set_model_enabled(s, OPERATOR, name, False)
    say(f"model {name} disabled")


@gateway_app.command("enable-model")
def enable_model(ctx: typer.Context, name: str) -> None:
    """Serve a disabled model again."""
    with change(ctx) as s:
        service.set_model_enabled(s, OPERATOR, name, True)
    say(f"model {name} enabled")


@gateway_app.command("delete-model")
def delete_model(ctx: typer.Context, name: str,
                 force: bool = typer.Option(False, "--force", help="Delete its deployments with it.")) -> None:
    """Delete a model; one that still has deployments only with --force. Usage history is kept."""
    with change(ctx) as s:
        gone = service.delete_model(s, OPERATOR, name, force=force)
    say(f"model {name} deleted" + (f" with its deployments {', '.join(gone)}" if gone else ""))


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


@gateway_app.command("export-litellm")
def export_litellm(ctx: typer.Context, out: Path | None = typer.Option(
        None, help="Write the file here (default: print it).")) -> None:
    """The catalogue as a LiteLLM proxy config.yaml: leave for another gateway with your models and routing."""
    with session_of(ctx) as s:
        exported = exits.litellm_config(s, OPERATOR)
    text = exits.litellm_yaml(exported, __version__, utcnow().date().isoformat(), out.name if out else "config.yaml")
    if out is None:
        typer.echo(text, nl=False)
        return
    documents.write_text_atomic(out, text)
    say(f"wrote {out}: {len(exported.config['model_list'])} deployments; set the keys in "
        f"{', '.join(exported.key_variables) or 'no variable (no deployment has a key)'}")


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
               default: str | None = typer.Option(None, help="open|restricted|sensitive [default: kept; raised "
                                                  "to the floor if below it]"),
               floor: str | None = typer.Option(None, help="Lowest classification a request may claim "
                                                "[default: kept; its organisation's floor binds anyway]."),
               rpm: int | None = typer.Option(None, help="Requests per minute [default: kept]."),
               no_rpm: bool = typer.Option(False, "--no-rpm", help="Remove the key's requests-per-minute limit."),
               models: str | None = typer.Option(None, help="Comma-separated models the key may call; '*' for "
                                                 "every model [default: kept]."),
               tpm: int | None = typer.Option(None, min=0, help="Tokens per minute; 0 removes the limit "
                                              "[default: kept]."),
               max_concurrency: int | None = typer.Option(None, min=0, help="Calls in flight at once (per server "
                                                          "process); 0 removes the limit [default: kept]."),
               as_json: bool = JsonOpt) -> None:
    """Show a key's policy, or change what is given of its default classification, floor, rate limit (stricter
    than its organisation's, never looser), model allowlist, tokens per minute and concurrency; what is not
    given is kept."""
    if rpm is not None and no_rpm:
        raise BadInput("give --rpm or --no-rpm, not both", field="rpm")
    given: dict[str, object] = {"default_classification": default, "floor_classification": floor,
                                "requests_per_minute": rpm}
    changes = {k: v for k, v in given.items() if v is not None}
    if no_rpm:
        changes["requests_per_minute"] = None
    if models is not None:
        changes["models"] = None if models.strip() == "*" else [m.strip() for m in models.split(",") if m.strip()]
    if tpm is not None:
        changes["tokens_per_minute"] = tpm or None
    if max_concurrency is not None:
        changes["max_concurrency"] = max_concurrency or None
    with change(ctx) as s:
        if changes:
            service.set_key_policy(s, OPERATOR, key, KeyPolicySet.model_validate(changes))
        shown = service.key_policy(s, OPERATOR, key)
    emit_one(shown, as_json)


@gateway_app.command("key-limits")
def key_limits(ctx: typer.Context, key: str = typer.Argument(..., help="Key prefix, sk-xxxxxxxx."),
               as_json: bool = JsonOpt) -> None:
    """Show a key's policy: classification, rate limits, model allowlist, concurrency."""
    with session_of(ctx) as s:
        shown = service.key_policy(s, OPERATOR, key)
    emit_one(shown, as_json)


@gateway_app.command("spend-budget")
def spend_budget(ctx: typer.Context, scope: str = typer.Argument(..., help="key|person|organisation"),
                 subject: str = typer.Argument(..., help="Key prefix, person's email or id, organisation's "
                                               "name or id."),
                 amount: float = typer.Option(..., min=0, help="Tokens, or money in --unit."),
                 unit: str = typer.Option("tokens", help="tokens, or an ISO 4217 currency code (EUR, INR, USD): "
                                          "only spend priced in that currency counts."),
                 period: str = typer.Option("month", help="day|week|month"),
                 alerts: str = typer.Option("50,80,100", help="Comma-separated percentages to alert at.")) -> None:
    """Set the budget of a key, a person (all their keys) or an organisation, in tokens or money, per period."""
    try:
        thresholds = [int(a) for a in alerts.split(",") if a.strip()]
    except ValueError as exc:
        raise BadInput("--alerts must be comma-separated whole percentages, e.g. 50,80,100", field="alerts") from exc
    data = SpendBudgetSet.model_validate({"scope": scope, "subject": subject, "amount": amount, "unit": unit,
                                          "period": period, "alerts": thresholds})
    with change(ctx) as s:
        row = budgets.set_budget(s, OPERATOR, data)
    say(f"budget {row.id}: {data.scope} {row.subject}, {data.amount:g} {data.unit} per {data.period}, alerts at "
        f"{', '.join(f'{a}%' for a in data.alerts) or 'none'}")


@gateway_app.command("spend-budget-remove")
def spend_budget_remove(ctx: typer.Context, budget_id: int) -> None:
    """Remove a spend budget."""
    with change(ctx) as s:
        budgets.remove_budget(s, OPERATOR, budget_id)
    say(f"budget {budget_id} removed")


@gateway_app.command("spend-budgets")
def spend_budgets(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Every spend budget and what it has spent in its current period."""
    with session_of(ctx) as s:
        rows = budgets.status(s, OPERATOR, counters_for(state(ctx).settings))
    emit(rows, ["id", "scope", "label", "unit", "amount", "spent", "period", "window", "alerts"], as_json,
         title="spend budgets")


@gateway_app.command("alerts")
def alerts_cmd(ctx: typer.Context, limit: int = typer.Option(50, min=1, max=1000), as_json: bool = JsonOpt) -> None:
    """Budget thresholds reached, newest first (each once per threshold per period)."""
    with session_of(ctx) as s:
        rows = [AlertPublic.model_validate(a) for a in budgets.alerts(s, OPERATOR, limit)]
    emit(rows, ["at", "budget_id", "scope", "subject", "threshold", "spent", "amount", "unit", "window"], as_json,
         title="budget alerts, newest first")


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


@gateway_app.command("stored-responses")
def stored_responses_cmd(ctx: typer.Context, organisation: str,
                         enable: bool = typer.Option(..., "--enable/--disable",
                                                     help="Keep Responses API answers (for previous_response_id)?"),
                         retention_days: int = typer.Option(30, min=1, max=3650)) -> None:
    """Keep an organisation's Responses API answers, so its members can continue them with previous_response_id;
    --disable forgets every kept one, a shorter retention those older than it."""
    with change(ctx) as s:
        org = identity.get_organisation(s, ref(organisation))
        forgotten = stored.set_org_responses(s, OPERATOR, org.id, OrgResponsesSet(enabled=enable,
                                                                                  retention_days=retention_days))
    say(f"{org.name}: responses " + (f"kept {retention_days} days" if enable else "not kept")
        + (f"; {forgotten} kept responses forgotten" if forgotten else ""))


@gateway_app.command("cache")
def cache_cmd(ctx: typer.Context, organisation: str,
              enable: bool | None = typer.Option(None, "--enable/--disable",
                                                 help="Turn the exact-match answer cache on or off."),
              ttl: int = typer.Option(300, min=1, max=86_400, help="Seconds an answer is kept."),
              purge: bool = typer.Option(False, "--purge", help="Forget every kept answer now.")) -> None:
    """An organisation's exact-match answer cache: on (answers kept --ttl seconds), off, or purged."""
    if enable is None and not purge:
        raise BadInput("say --enable, --disable or --purge", field="enable")
    settings = state(ctx).settings
    with change(ctx) as s:
        org = identity.get_organisation(s, ref(organisation))
        answers = AnswerCache(settings, store_for(settings, state(ctx).db))
        if enable is not None:
            service.set_org_cache(s, OPERATOR, org.id, OrgCacheSet(enabled=enable, ttl_seconds=ttl))
        deleted = service.purge_cache(s, OPERATOR, org.id, answers) if purge or enable is False else None
    if enable is not None:
        say(f"{org.name}: answer cache " + (f"on, answers kept {ttl} s" if enable else "off"))
    if deleted is not None:
        say(f"{org.name}: {deleted} kept answers forgotten")


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
    rows = rep.rows if as_json else [{**r.model_dump(), "cost": usage.money(r.costs)} for r in rep.rows]
    emit(rows, ["group", "requests", "tokens_in", "tokens_out", "cost", "errors", "refused", "p50_latency_ms"],
         as_json, title=f"usage by {by}, last {days} days")
