"""Disruption scenarios as data: which components a shock hits, and what it does to them."""

from __future__ import annotations

from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovstack.assess.manifest import Component, Substitute
from sovstack.assess.stack import Stack
from sovstack.core import documents
from sovstack.core.errors import BadInput, NotFound
from sovstack.core.jurisdictions import catalogue

Effect = Literal["cut_off", "stop", "degrade", "disclose"]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(Frozen):
    """Conditions a component must all meet to be hit; an empty condition matches everything."""

    layers: tuple[str, ...] = ()
    party_jurisdictions: tuple[str, ...] = ()
    export_regimes_of: tuple[str, ...] = ()
    reached_by_laws_of: tuple[str, ...] = ()
    open_weights: bool | None = None
    hosted_abroad: bool | None = None
    holds_data: bool | None = None
    tags: tuple[str, ...] = ()


class Shock(Frozen):
    when: Match
    effect: Effect
    note: str = ""


class Scenario(Frozen):
    id: str
    title: str
    effective: date
    description: str = ""
    sources: tuple[str, ...] = ()
    untested_factor: float = Field(2.0, ge=1)
    degraded_service: float = Field(1.0, ge=0, le=1, description="Service a degraded component still gives.")
    shocks: tuple[Shock, ...] = Field(min_length=1)


class ScenarioBook(Frozen):
    version: str
    scenarios: tuple[Scenario, ...]


def scenarios_from_text(text: str, what: str = "scenarios") -> ScenarioBook:
    data = documents.load_yaml(text, what)
    try:
        return ScenarioBook.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadInput(f"{what}: {where}: {first['msg']}") from exc


@cache
def builtin_scenarios() -> ScenarioBook:
    """The scenarios shipped with sovstack, each with its sources."""
    text = resources.files("sovstack.assess").joinpath("data/scenarios.yaml").read_text("utf-8")
    return scenarios_from_text(text, "scenarios.yaml")


def select_scenarios(names: list[str], file: Path | None = None) -> list[Scenario]:
    """Scenarios by id from the built-in book (or ``file``); all of them when ``names`` is empty."""
    book = scenarios_from_text(documents.read_text(file), file.name) if file else builtin_scenarios()
    by_id = {s.id: s for s in book.scenarios}
    missing = [n for n in names if n not in by_id]
    if missing:
        raise NotFound(f"no scenario {', '.join(map(repr, missing))}; known: {', '.join(by_id)}", field="scenario")
    return [by_id[n] for n in names] if names else list(by_id.values())


class Matcher:
    """Evaluates a shock's conditions against components of one stack (jurisdiction sets computed once)."""

    def __init__(self, when: Match, stack: Stack) -> None:
        self.when = when
        self.stack = stack
        home = {stack.home}
        self.parties = catalogue().expand(list(when.party_jurisdictions)) - home
        self.regimes = {r.id for r in catalogue().regimes
                        if r.jurisdiction and catalogue().expand([r.jurisdiction]) & set(when.export_regimes_of)
                        and stack.home not in catalogue().expand([r.jurisdiction])}
        laws_from = catalogue().expand(list(when.reached_by_laws_of)) - home
        self.reached = {law.id for law in catalogue().laws if law.jurisdiction in laws_from}

    def hits(self, comp: Component) -> bool:
        w, stack = self.when, self.stack
        if w.layers and comp.layer not in w.layers:
            return False
        if w.tags and not set(w.tags) & set(comp.tags):
            return False
        if w.holds_data is not None and comp.holds_data != w.holds_data:
            return False
        if w.open_weights is not None and bool(comp.open.weights) != w.open_weights:
            return False
        if w.hosted_abroad is not None and any(c != stack.home for c in comp.hosted_in) != w.hosted_abroad:
            return False
        if self.parties and not (stack.party_codes(comp.supplier) | stack.party_codes(comp.operator)) & self.parties:
            return False
        if w.export_regimes_of and not (comp.export_control and comp.export_control.controlled
                                        and comp.export_control.regime in self.regimes):
            return False
        return not (w.reached_by_laws_of and not self._reached(comp))

    def _reached(self, comp: Component) -> bool:
        holders = {comp.supplier, comp.operator}
        for party in holders:
            standing = self.stack.standing(party)
            if standing is not None and set(standing.laws) & self.reached:
                return True
        return False

    def hits_substitute(self, comp: Component, sub: Substitute) -> bool:
        """Whether an outside substitute is hit too: by its supplier's or hosting's jurisdiction."""
        w = self.when
        if w.layers and comp.layer not in w.layers:
            return False
        codes = self.stack.party_codes(sub.supplier)
        if self.parties and codes & self.parties:
            return True
        if w.export_regimes_of and codes & catalogue().expand(list(w.export_regimes_of)) - {self.stack.home}:
            return True
        return bool(w.hosted_abroad and any(c != self.stack.home for c in sub.hosted_in))
