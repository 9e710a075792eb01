"""What every CLI command shares: the deployment it acts on, output as table or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pluggy
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from sovstack.core import identity
from sovstack.core.base import rfc3339
from sovstack.core.context import CORE_SCOPES, Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.errors import Unavailable
from sovstack.core.settings import Settings

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


@dataclass
class CliState:
    """Built once per invocation by the root callback and handed to commands via ctx.obj."""

    overrides: dict[str, Any] = field(default_factory=dict)
    plugins: pluggy.PluginManager | None = None
    scopes: tuple[str, ...] = CORE_SCOPES
    _settings: Settings | None = None
    _db: Database | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings(**self.overrides)
        return self._settings

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.settings)
        return self._db

    def ready_db(self) -> Database:
        """The database, refusing to act on one that is down or not yet migrated."""
        db = self.db
        db.ping()
        if not db.is_current():
            raise Unavailable("the database is not initialised or not up to date: run `sovstack init` "
                              "(or `sovstack db upgrade`)")
        return db


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


OPERATOR = Principal.system("cli")


def acting_as(session: Session, email: str, *, admin: bool = True) -> Principal:
    """A user as the CLI acts for them (``--as``): their roles, audited as run from the CLI.

    ``admin=False`` drops a deployment admin's rights, for commands that must use the user's own grants only.
    """
    user = identity.get_user(session, email)
    return Principal(user_id=user.id, email=f"{user.email} via cli", is_admin=admin and user.is_admin,
                     roles=identity.memberships_of(session, user.id))


@contextmanager
def session_of(ctx: typer.Context) -> Iterator[Session]:
    with state(ctx).ready_db().session() as session:
        yield session


@contextmanager
def change(ctx: typer.Context) -> Iterator[Session]:
    """A session whose work is committed as one unit, acting as the local operator."""
    with session_of(ctx) as session, unit_of_work(session, OPERATOR):
        yield session


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return rfc3339(value)
    return value


def emit(rows: Sequence[Any], columns: Sequence[str], as_json: bool, title: str = "") -> None:
    """Rows (models or dicts) as a table, or as a JSON list."""
    dicts = [_plain(r) if not isinstance(r, dict) else r for r in rows]
    out = Console(soft_wrap=True)
    if as_json:
        out.print_json(json.dumps(dicts, default=str))
        return
    table = Table(title=title or None)
    for col in columns:
        table.add_column(col)
    for d in dicts:
        table.add_row(*[_cell(d.get(c)) for c in columns])
    out.print(table)


def emit_one(value: Any, as_json: bool) -> None:
    data = _plain(value)
    out = Console(soft_wrap=True)
    if as_json:
        out.print_json(json.dumps(data, default=str))
        return
    for key, item in data.items():
        out.print(f"[bold]{key}[/bold]: {_cell(item)}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def ref(value: str) -> int | str:
    """A CLI reference to a row: digits are an id, anything else a name (or email, or key prefix)."""
    return int(value) if value.isdigit() else value


def say(message: str) -> None:
    Console(soft_wrap=True).print(message)
