"""`sovstack policy …`: read, change and question the deployment policy."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sovstack.core import documents, parties, policy
from sovstack.core.cli.common import OPERATOR, JsonOpt, change, emit, ref, say, session_of, state
from sovstack.core.context import Principal
from sovstack.core.errors import BadInput
from sovstack.core.jurisdictions import check_country

# Checks are asked on behalf of an ordinary signed-in member, not of the all-powerful operator.
A_MEMBER = Principal(user_id=None, email="a member", is_admin=False)

policy_app = typer.Typer(help="Classification levels and residency rules.", no_args_is_help=True)


@policy_app.command("show")
def policy_show(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """The policy in force."""
    with session_of(ctx) as s:
        doc = policy.current(s, state(ctx).settings.home_jurisdiction)
    if as_json:
        typer.echo(doc.model_dump_json(indent=2))
        return
    say(f"home jurisdiction: [bold]{doc.home_jurisdiction}[/bold]")
    rows = [{"level": name, **rule.model_dump()} for name, rule in doc.levels.items()]
    emit(rows, ["level", "access", "modes", "hosting_jurisdictions", "operator_jurisdictions",
                "allow_foreign_extraterritorial"], False)


@policy_app.command("set")
def policy_set(ctx: typer.Context, file: Path = typer.Argument(..., help="A JSON policy document.")) -> None:
    """Put a new policy in force (validated whole; nothing changes if any part is wrong)."""
    doc = policy.PolicyDocument.model_validate(documents.load_json(documents.read_text(file), str(file)))
    with change(ctx) as s:
        version = policy.save(s, OPERATOR, doc)
    say(f"policy version {version.id} in force")


@policy_app.command("check")
def policy_check(ctx: typer.Context,
                 classification: str = typer.Option(..., help="open|restricted|sensitive"),
                 action: str = typer.Option("process", help="process|download|sandbox"),
                 party: str | None = typer.Option(None, help="Operating party (name or id)."),
                 hosting: str | None = typer.Option(None, help="Hosting jurisdiction."),
                 granted: bool = typer.Option(False, help="The subject holds an access grant."),
                 as_json: bool = JsonOpt) -> None:
    """Explain what the policy decides; exit 1 when refused."""
    if classification not in policy.LEVELS:
        raise BadInput(f"unknown classification {classification!r}; one of {', '.join(policy.LEVELS)}",
                       field="classification")
    if action not in ("process", "download", "sandbox"):
        raise BadInput(f"unknown action {action!r}; one of process, download, sandbox", field="action")
    with session_of(ctx) as s:
        found = parties.get_party(s, ref(party)) if party else None
        doc = policy.current(s, state(ctx).settings.home_jurisdiction)
        decision = policy.decide(doc, A_MEMBER,
                                 action,  # type: ignore[arg-type]
                                 policy.Resource(classification=classification, party=found, granted=granted,
                                                 hosting_jurisdiction=check_country(hosting, "hosting")
                                                 if hosting else None))
    if as_json:
        typer.echo(json.dumps({"allowed": decision.allowed, "reasons": decision.reasons}, indent=2))
    else:
        say(("[green]allowed[/green]" if decision.allowed else "[red]refused[/red]") + f": {classification} "
            f"{action}" + (f" by {found.name}" if found else ""))
        for reason in decision.reasons:
            say(f"  - {reason}")
    if not decision.allowed:
        raise typer.Exit(1)
