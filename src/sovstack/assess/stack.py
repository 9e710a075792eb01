"""A checked manifest, indexed for answering: parties' standing towards home, and who depends on whom."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sovstack.assess.graph import dependents
from sovstack.assess.manifest import Component, Manifest, Party
from sovstack.core.jurisdictions import catalogue

# How a party stands towards the home jurisdiction, from best to worst.
DOMESTIC = "domestic"
ALLIED = "allied"
FOREIGN = "foreign"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Standing:
    """Where a party and its ultimate parent sit, and which foreign laws reach them."""

    party: str
    own: str
    parent: str
    laws: tuple[str, ...]

    @property
    def reached(self) -> bool:
        return bool(self.laws)


@dataclass
class Stack:
    """The manifest with indexes built once; ``allied`` are the countries sharing a bloc with home."""

    manifest: Manifest
    allied_blocs: tuple[str, ...] = ("EU", "EEA")
    components: dict[str, Component] = field(init=False)
    parties: dict[str, Party] = field(init=False)

    def __post_init__(self) -> None:
        self.components = {c.id: c for c in self.manifest.components}
        self.parties = {p.id: p for p in self.manifest.parties}

    @property
    def home(self) -> str:
        return self.manifest.home

    @cached_property
    def allied(self) -> frozenset[str]:
        blocs = catalogue().blocs
        out = {m for code in self.allied_blocs if code in blocs and self.home in blocs[code].members
               for m in blocs[code].members}
        out.discard(self.home)
        return frozenset(out)

    @cached_property
    def standings(self) -> dict[str, Standing]:
        return {p.id: self._standing(p) for p in self.manifest.parties}

    @cached_property
    def dependents(self) -> dict[str, list[str]]:
        return dependents({c.id: c.depends_on for c in self.manifest.components})

    def place(self, code: str | None) -> str:
        """domestic, allied, foreign or unknown, for one country code."""
        if code is None:
            return UNKNOWN
        if code == self.home:
            return DOMESTIC
        return ALLIED if code in self.allied else FOREIGN

    def _standing(self, party: Party) -> Standing:
        parent = party.parent_jurisdiction or party.jurisdiction
        laws: list[str] = []
        for code in dict.fromkeys(c for c in (party.jurisdiction, parent) if c and c != self.home):
            laws.extend(law.id for law in catalogue().laws_of(code))
        return Standing(party.id, self.place(party.jurisdiction), self.place(parent), tuple(laws))

    def standing(self, party_id: str | None) -> Standing | None:
        return self.standings.get(party_id) if party_id else None

    def party_codes(self, party_id: str | None) -> set[str]:
        """The jurisdictions of a party and of its ultimate parent."""
        party = self.parties.get(party_id) if party_id else None
        if party is None:
            return set()
        return {c for c in (party.jurisdiction, party.parent_jurisdiction) if c}
