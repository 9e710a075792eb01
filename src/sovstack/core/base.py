"""The declarative base every table of every module derives from, and the clock tables use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table of every module."""

    metadata = MetaData(naming_convention=NAMING)


# Marks a module puts on its own columns and tables (``info=``) for those who read the schema as a whole —
# the whole-deployment export above all — so that no list of tables or columns is kept anywhere else.

def secret() -> dict[str, Any]:
    """Column info: a credential kept as is (a password or key hash); left out of exports unless sealed."""
    return {"secret": "hash"}


def sealed(purpose: str) -> dict[str, Any]:
    """Column info: a value encrypted with the deployment's own key for ``purpose`` (core/sealing.py)."""
    return {"secret": "sealed", "sealed_for": purpose}


def runtime() -> dict[str, Any]:
    """Table info: state the running deployment rebuilds (sessions, caches); never exported."""
    return {"runtime": True}


def singleton() -> dict[str, Any]:
    """Table info: the one row a migration creates; an import replaces it."""
    return {"singleton": True}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def as_utc(value: datetime) -> datetime:
    """A datetime with its offset: the database keeps naive UTC, every answer says so (RFC 3339)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def naive_utc(value: datetime) -> datetime:
    """A datetime as the database keeps it: naive UTC (an input with an offset is converted first)."""
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def rfc3339(value: datetime | None) -> str | None:
    """``2026-12-03T14:00:00Z``: how every time leaves sovstack (API, CLI JSON, exports)."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


# A time in an answer: the value as stored (naive UTC), given back with its offset.
UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]
