"""What an export or an import reports, and how long work reports progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import ColumnElement, Table

FORMAT_VERSION = 1  # Sovstack-Export-Format in bag-info.txt: a newer one is refused
SecretsMode = Literal["omit", "encrypt"]
# Which rows of a table an export takes (None: all). The whole-deployment export takes all; an
# organisation's export (#16 item 4) will pass a filter per table.
RowFilter = Callable[[Table], ColumnElement[bool] | None]


class Progress(Protocol):
    """Where long work reports how far it got: ``task`` starts a task and returns its advance function."""

    def task(self, description: str, total: float | None) -> Callable[[float], None]: ...


class Quiet:
    """Progress reported nowhere."""

    def task(self, description: str, total: float | None) -> Callable[[float], None]:
        return lambda _n: None


@dataclass
class Carried:
    """What a bag holds, counted: rows per table, objects and their bytes, credentials left out or sealed."""

    tables: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    object_bytes: int = 0
    secrets: SecretsMode = "omit"
    credentials: dict[str, int] = field(default_factory=dict)  # "table.column" → values left out or sealed
    schema_revision: str = ""

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


@dataclass
class ExportResult(Carried):
    path: Path = Path()
    payload_bytes: int = 0


@dataclass
class ImportResult(Carried):
    settings_differ: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name → (bag's, this deployment's)
