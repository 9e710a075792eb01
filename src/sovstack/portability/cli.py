"""`sovstack export` and `sovstack import`: parse, call the service, show progress and what to do next."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from sovstack.core.base import Base
from sovstack.core.cli.common import JsonOpt, emit_one, say, state
from sovstack.core.errors import BadInput
from sovstack.core.plugins import plugin_manager
from sovstack.portability import service
from sovstack.portability.carried import Carried

OutOpt = typer.Option(..., "--out", "-o", help="A new folder, or a file ending in .tar, to write the bag to.")
SecretsOpt = typer.Option("omit", "--secrets", help="omit: leave credentials out (users reset passwords, keys are "
                          "issued again); encrypt: seal them with a passphrase (SOVSTACK_EXPORT_PASSPHRASE, "
                          "else asked).", case_sensitive=False)
BagArg = typer.Argument(..., help="The bag: a folder, or a .tar file, written by `sovstack export`.")


class _Bars:
    """Rich progress bars on stderr, one per task (bytes for objects, rows for tables)."""

    def __init__(self, bars: RichProgress) -> None:
        self.bars = bars

    def task(self, description: str, total: float | None) -> Callable[[float], None]:
        task = self.bars.add_task(description, total=total)
        return lambda n: self.bars.advance(task, n)


@contextmanager
def _progress(quiet: bool) -> Iterator[service.Progress]:
    console = Console(stderr=True)
    if quiet or not console.is_terminal:  # bars only for a person watching; logs and pipes get the summary
        yield service.Quiet()
        return
    columns = [TextColumn("{task.description:>8}"), BarColumn(), TaskProgressColumn(), MofNCompleteColumn(),
               TimeRemainingColumn()]
    with RichProgress(*columns, console=console, transient=True) as bars:
        yield _Bars(bars)


def _passphrase(given: str, *, confirm: bool) -> str:
    if given:
        return given
    if not sys.stdin.isatty():
        raise BadInput("the credentials are sealed with a passphrase: set SOVSTACK_EXPORT_PASSPHRASE "
                       "(it is never taken as an argument, which other users could see)", field="passphrase")
    text: str = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
    return text


def _credentials_line(carried: Carried, *, imported: bool) -> str:
    what = ", ".join(f"{label} ×{n}" for label, n in sorted(carried.credentials.items()))
    if carried.secrets == "encrypt":
        return f"credentials sealed with the passphrase: {what or 'none'}"
    if not what:
        return "no credentials to leave out"
    where = "were not in the bag" if imported else "were left out (--secrets omit)"
    return (f"credentials {where}: {what} — users must reset their passwords (an admin sets them with "
            "`sovstack user update`), API keys must be issued again and upstream model keys entered again")


def export(ctx: typer.Context, out: Path = OutOpt, secrets: str = SecretsOpt, as_json: bool = JsonOpt) -> None:
    """Export the whole deployment as a BagIt bag: every table, object, the policy and settings."""
    if secrets not in ("omit", "encrypt"):
        raise BadInput("--secrets must be omit or encrypt", field="secrets")
    st = state(ctx)
    db = st.ready_db()
    passphrase = _passphrase(st.settings.export_passphrase.get_secret_value(), confirm=True) \
        if secrets == "encrypt" else None
    with _progress(as_json) as progress:
        result = service.export_deployment(db, Base.metadata, out, secrets=secrets,  # type: ignore[arg-type]
                                           passphrase=passphrase, progress=progress)
    if as_json:
        emit_one(_summary(result) | {"path": str(result.path), "payload_bytes": result.payload_bytes}, True)
        return
    say(f"exported {result.rows:,} rows of {len(result.tables)} tables and {result.objects:,} objects "
        f"({result.object_bytes:,} bytes) to {result.path} (schema {result.schema_revision})")
    say(_credentials_line(result, imported=False))


def import_bag(ctx: typer.Context, bag: Path = BagArg, as_json: bool = JsonOpt) -> None:
    """Import a bag into this deployment, which must be empty: verified whole first, loaded all or nothing."""
    st = state(ctx)
    st.settings.home.mkdir(parents=True, exist_ok=True)
    st.settings.signing_key()
    given = st.settings.export_passphrase.get_secret_value()
    with _progress(as_json) as progress:
        result = service.import_deployment(st.db, Base.metadata, bag, passphrase=lambda: _passphrase(
            given, confirm=False), hooks=st.plugins or plugin_manager(), progress=progress)
    if as_json:
        emit_one(_summary(result) | {"settings_differ": {k: list(v) for k, v in result.settings_differ.items()}},
                 True)
        return
    say(f"imported {result.rows:,} rows of {len(result.tables)} tables and {result.objects:,} objects "
        f"({result.object_bytes:,} bytes); the audit chain continues from it (schema {result.schema_revision})")
    say(_credentials_line(result, imported=True))
    for name, (theirs, ours) in sorted(result.settings_differ.items()):
        say(f"setting {name} was {theirs!r} at the source and is {ours!r} here (SOVSTACK_{name.upper()})")


def _summary(result: Carried) -> dict[str, Any]:
    return {"tables": result.tables, "rows": result.rows, "objects": result.objects,
            "object_bytes": result.object_bytes, "secrets": result.secrets, "credentials": result.credentials,
            "schema_revision": result.schema_revision}
