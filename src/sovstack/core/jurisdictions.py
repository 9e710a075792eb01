"""Jurisdiction facts shipped with the package: countries, blocs, extraterritorial laws, export regimes.

The facts are data (``core/data/jurisdictions.json``), each with a source reference, and are
shown to users as such. This module only reads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from sovstack.core.errors import BadInput, NotFound


@dataclass(frozen=True)
class Country:
    code: str
    name: str


@dataclass(frozen=True)
class Bloc:
    code: str
    name: str
    members: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Law:
    """A law whose reach extends beyond its own territory."""

    id: str
    name: str
    jurisdiction: str
    citation: str
    reach: str
    applies_to: str
    source: str


@dataclass(frozen=True)
class ExportRegime:
    id: str
    name: str
    jurisdiction: str
    citation: str
    covers: str
    source: str


@dataclass(frozen=True)
class Catalogue:
    source_note: str
    countries: dict[str, Country]
    blocs: dict[str, Bloc]
    laws: tuple[Law, ...]
    regimes: tuple[ExportRegime, ...]

    def country(self, code: str) -> Country:
        found = self.countries.get(code.upper())
        if found is None:
            raise NotFound(f"unknown country code {code!r}", field="code")
        return found

    def expand(self, codes: list[str]) -> set[str]:
        """Country codes named by a list of countries, blocs and ``*`` (any)."""
        out: set[str] = set()
        for code in codes:
            if code == "*":
                out.update(self.countries)
            elif code in self.blocs:
                out.update(self.blocs[code].members)
            else:
                out.add(code)
        return out

    def laws_of(self, jurisdiction: str) -> list[Law]:
        """Extraterritorial laws that bind entities of this jurisdiction."""
        return [law for law in self.laws if law.jurisdiction == jurisdiction]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_note": self.source_note,
            "countries": [c.__dict__ for c in self.countries.values()],
            "blocs": [{**b.__dict__, "members": list(b.members)} for b in self.blocs.values()],
            "laws": [law.__dict__ for law in self.laws],
            "export_control_regimes": [r.__dict__ for r in self.regimes],
        }


@cache
def catalogue() -> Catalogue:
    """The shipped jurisdiction data (read once; immutable)."""
    raw = json.loads(resources.files("sovstack.core").joinpath("data/jurisdictions.json").read_text("utf-8"))
    return Catalogue(
        source_note=raw["source_note"],
        countries={c["code"]: Country(**c) for c in raw["countries"]},
        blocs={b["code"]: Bloc(b["code"], b["name"], tuple(b["members"]), b["source"]) for b in raw["blocs"]},
        laws=tuple(Law(**law) for law in raw["laws"]),
        regimes=tuple(ExportRegime(**r) for r in raw["export_control_regimes"]),
    )


def check_country(code: str, field: str = "jurisdiction") -> str:
    """Normalise and validate an ISO 3166-1 alpha-2 code, naming the field when it is wrong."""
    value = (code or "").strip().upper()
    if value not in catalogue().countries:
        raise BadInput(f"unknown jurisdiction code {code!r}: expected an ISO 3166-1 alpha-2 code",
                       field=field)
    return value


def check_place(code: str, field: str) -> str:
    """A country, a bloc or ``*``."""
    value = (code or "").strip().upper()
    if value == "*" or value in catalogue().blocs:
        return value
    return check_country(value, field)
