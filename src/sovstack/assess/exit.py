"""Exit readiness: can each component be left — data and configuration out in open formats, a tested
substitute in, and the switch done within a published switching rule's notice and transition periods."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict

from sovstack.assess.manifest import Component, Manifest
from sovstack.assess.results import ExitFinding
from sovstack.core import documents
from sovstack.core.errors import NotFound

DEFAULT_RULE = "eu-data-act"


class SwitchingRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    notice_days: float
    transition_days: float
    extended_transition_days: float
    note: str = ""
    source: str

    @property
    def allowed_days(self) -> float:
        return self.notice_days + self.transition_days

    @property
    def extended_days(self) -> float:
        return self.notice_days + self.extended_transition_days


@cache
def switching_rules() -> dict[str, SwitchingRule]:
    """The shipped switching rules, by id."""
    text = resources.files("sovstack.assess").joinpath("data/switching-rules.yaml").read_text("utf-8")
    raw = documents.load_yaml(text, "switching-rules.yaml")
    return {r["id"]: SwitchingRule.model_validate(r) for r in raw["rules"]}


def switching_rule(name: str | None = None) -> SwitchingRule:
    found = switching_rules().get(name or DEFAULT_RULE)
    if found is None:
        raise NotFound(f"no switching rule {name!r}; shipped: {', '.join(switching_rules())}", field="rule")
    return found


def exit_readiness(manifest: Manifest, rule: SwitchingRule | None = None) -> list[ExitFinding]:
    """One finding per component, against ``rule`` (the EU Data Act by default)."""
    rule = rule or switching_rule()
    return [exit_finding(c, rule) for c in manifest.components]


def exit_finding(comp: Component, rule: SwitchingRule) -> ExitFinding:
    reasons: list[str] = []
    for what, value in (("data", comp.exit.data_export), ("configuration", comp.exit.config_export)):
        if value != "open":
            reasons.append(f"{what} export: {value or 'not declared'}")
    tested = [s for s in comp.substitutes if s.tested is not None]
    best = min(tested or comp.substitutes, key=lambda s: s.switch_days, default=None)
    within: bool | None = None
    if best is None:
        reasons.append("no substitute declared")
    else:
        within = best.switch_days <= rule.allowed_days
        if not tested:
            reasons.append(f"substitute {best.name!r} never tested")
        if not within:
            extended = best.switch_days <= rule.extended_days
            reasons.append(f"switch takes {best.switch_days:g} days, over the {rule.allowed_days:g} of {rule.id}"
                           + (" (fits only with the extended transition)" if extended else ""))
    return ExitFinding(
        component=comp.id, layer=comp.layer, data_export=comp.exit.data_export,
        config_export=comp.exit.config_export, substitute=best.name if best else None, tested=bool(tested),
        switch_days=best.switch_days if best else None, allowed_days=rule.allowed_days, within_rule=within,
        verdict=_verdict(comp, best is not None, bool(tested), within), reasons=tuple(reasons))


def _verdict(comp: Component, has_substitute: bool, tested: bool,
             within: bool | None) -> Literal["ready", "partial", "not_ready"]:
    if not has_substitute or comp.exit.data_export in (None, "none"):
        return "not_ready"
    if tested and within and comp.exit.data_export == "open" and comp.exit.config_export == "open":
        return "ready"
    return "partial"
