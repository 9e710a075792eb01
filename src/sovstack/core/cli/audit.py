"""`sovstack audit …`: read, export and verify the hash-chained audit log."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import typer

from sovstack.core import audit
from sovstack.core.cli.common import JsonOpt, emit, say, session_of

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

ActorOpt = typer.Option(None, help="Exact actor.")
ActionOpt = typer.Option(None, help="Exact action, or a family such as 'identity.*'.")
OutcomeOpt = typer.Option(None, help="ok|refused|failed")


def _filter(actor: str | None, action: str | None, target: str | None, outcome: str | None,
            since: datetime | None, until: datetime | None) -> audit.AuditFilter:
    return audit.AuditFilter(actor=actor, action=action, target=target, outcome=outcome, since=since, until=until)


@audit_app.command("list")
def audit_list(ctx: typer.Context, actor: str | None = ActorOpt, action: str | None = ActionOpt,
               target: str | None = None, outcome: str | None = OutcomeOpt,
               since: datetime | None = None, until: datetime | None = None,
               limit: int = typer.Option(50, min=1, max=10000), as_json: bool = JsonOpt) -> None:
    """The newest events, filtered."""
    with session_of(ctx) as s:
        rows = [audit.as_dict(e) for e in audit.search(s, _filter(actor, action, target, outcome, since, until),
                                                      limit=limit)]
    emit(rows, ["seq", "at", "actor", "action", "target", "outcome", "reasons"], as_json)


@audit_app.command("export")
def audit_export(ctx: typer.Context, output: Path | None = typer.Option(None, "-o", "--output", dir_okay=False,
                 help="File to write; standard output if absent."),
                 actor: str | None = ActorOpt, action: str | None = ActionOpt,
                 target: str | None = None, outcome: str | None = OutcomeOpt,
                 since: datetime | None = None, until: datetime | None = None) -> None:
    """Matching events, oldest first, as JSON Lines (hashes included, so a copy can be re-verified)."""
    f = _filter(actor, action, target, outcome, since, until)
    with session_of(ctx) as s:
        if output is None:
            sys.stdout.writelines(audit.export_lines(s, f))
            return
        tmp = output.with_suffix(output.suffix + ".partial")
        with tmp.open("w") as fh:
            count = sum(1 for line in audit.export_lines(s, f) if fh.write(line))
        tmp.replace(output)
    say(f"wrote {count} events to {output}")


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Prove the chain intact, or name the first event that was altered, deleted, inserted or reordered."""
    with session_of(ctx) as s:
        result = audit.verify(s)
    if as_json:
        typer.echo(json.dumps(asdict(result)))
    elif result.ok:
        say(f"[green]audit chain intact[/green]: {result.checked} events verified")
    else:
        say(f"[red]audit chain broken[/red] at event {result.first_bad_seq}: {result.problem} "
            f"({result.checked} events verified before it)")
    if not result.ok:
        raise typer.Exit(1)
