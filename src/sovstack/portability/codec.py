"""How a row of any table becomes one line of JSON, and back, the same bytes on every database.

Driven by the SQLAlchemy metadata alone: a column's type decides its encoding and its Table Schema
(Frictionless) field; its ``info`` marks (core/base.py) say whether it is a secret. Canonical, so
that two exports of the same content are byte-identical whichever database they came from:

- a first line naming the columns, then one JSON array per row in that order, ``\\n`` after each;
- no spaces; the keys of JSON objects (JSON columns) sorted at every depth;
- integers and booleans as JSON; floats in their shortest round-trip form;
- NUMERIC(p, s) as a float rounded to s places (SQLite keeps whatever it was given, PostgreSQL rounds);
  decimals as strings;
- date-times as RFC 3339 in UTC with ``Z`` (microseconds only when not zero); dates as ISO 8601;
- bytes as base64; JSON columns as the JSON value itself.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Column, Table
from sqlalchemy import types as sqltypes

from sovstack.core.errors import BadInput

DUMPS_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """The canonical JSON of ``value``, without a line end."""
    return orjson.dumps(value, option=DUMPS_OPTIONS, default=_default)


@dataclass(frozen=True)
class Field:
    """One column: its Table Schema type and format, and how its values are encoded and decoded."""

    type: str
    format: str = "default"
    encode: Encoder | None = None
    decode: Decoder | None = None


def _rounder(scale: int | None) -> Encoder:
    # float(): SQLite gives back an integral NUMERIC as an int, PostgreSQL as a float.
    if scale is None:
        return lambda v: None if v is None else float(v)
    return lambda v: None if v is None else float(round(v, scale))


def _decimal_text(scale: int | None) -> Encoder:
    def encode(v: Any) -> Any:
        if v is None:
            return None
        d = Decimal(v)
        return str(d.quantize(Decimal(1).scaleb(-scale)) if scale is not None else d)
    return encode


def _from_iso(parse: Callable[[str], Any]) -> Decoder:
    return lambda v: None if v is None else parse(v.removesuffix("Z"))


def _naive_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is None else value.replace(tzinfo=None)


def _b64(v: Any) -> Any:
    return None if v is None else base64.b64decode(v)


def field_of(column: Column[Any]) -> Field:
    """The field a column becomes; BadInput for a type this format has no encoding for (yet)."""
    t = column.type
    if isinstance(t, sqltypes.Boolean):
        return Field("boolean")
    if isinstance(t, sqltypes.Integer):
        return Field("integer")
    if isinstance(t, sqltypes.Float):
        return Field("number")
    if isinstance(t, sqltypes.Numeric):
        if t.asdecimal:
            return Field("number", encode=_decimal_text(t.scale), decode=lambda v: None if v is None else Decimal(v))
        return Field("number", encode=_rounder(t.scale))
    if isinstance(t, sqltypes.DateTime):
        return Field("datetime", decode=_from_iso(_naive_datetime))
    if isinstance(t, sqltypes.Date):
        return Field("date", decode=_from_iso(date.fromisoformat))
    if isinstance(t, sqltypes.Time):
        return Field("time", decode=_from_iso(time.fromisoformat))
    if isinstance(t, sqltypes.JSON):
        return Field("any", format="default")
    if isinstance(t, sqltypes._Binary):
        return Field("string", format="binary", decode=_b64)
    if isinstance(t, sqltypes.Uuid):
        return Field("string", format="uuid", encode=lambda v: None if v is None else str(v))
    if isinstance(t, sqltypes.String):  # Text, Enum and Unicode too
        return Field("string")
    raise BadInput(f"column {column.table.name}.{column.name} has type {t!r}, which the export format "
                   "cannot encode yet")


def secret_kind(column: Column[Any]) -> str | None:
    """``"hash"``, ``"sealed"`` or None, from the column's mark."""
    kind = column.info.get("secret")
    return str(kind) if kind else None


def blank(column: Column[Any]) -> Any:
    """What a left-out secret is written as: null, or the empty string where the column needs a value."""
    return None if column.nullable else ""


def exported_tables(tables: Iterable[Table]) -> list[Table]:
    """The tables an export carries, parents before children: all but the runtime ones."""
    return [t for t in tables if not t.info.get("runtime")]


def primary_key(table: Table) -> list[Column[Any]]:
    """The columns rows are ordered and identified by (every column, for a table without a key)."""
    return list(table.primary_key.columns) or list(table.columns)


def table_schema(table: Table, exported: set[str]) -> dict[str, Any]:
    """The Frictionless Table Schema of a table: fields, primary key and foreign keys."""
    fields = []
    for column in table.columns:
        f = field_of(column)
        entry: dict[str, Any] = {"name": column.name, "type": f.type}
        if f.format != "default":
            entry["format"] = f.format
        if column.info.get("secret"):
            entry["description"] = "A credential: left out (empty) unless sealed in secrets.sealed.jsonl."
        elif not column.nullable:
            entry["constraints"] = {"required": True}
        fields.append(entry)
    # missingValues []: an empty string is a value (only null is missing), as in the database.
    schema: dict[str, Any] = {"fields": fields, "missingValues": [],
                              "primaryKey": [c.name for c in primary_key(table)]}
    foreign = []
    for fk in sorted(table.foreign_key_constraints, key=lambda c: [col.name for col in c.columns]):
        target = fk.referred_table.name
        if target not in exported:
            continue
        foreign.append({"fields": [c.name for c in fk.columns],
                        "reference": {"resource": target, "fields": [e.column.name for e in fk.elements]}})
    if foreign:
        schema["foreignKeys"] = foreign
    return schema


def decoders(table: Table, names: Sequence[str]) -> list[tuple[str, Decoder]]:
    """The columns of ``names`` whose JSON value must be turned back into a Python value to insert."""
    found = []
    for name in names:
        decode = field_of(table.c[name]).decode
        if decode is not None:
            found.append((name, decode))
    return found
