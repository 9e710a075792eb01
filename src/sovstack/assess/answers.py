"""The answer functions criteria name: each reads one component and returns a rung of its ladder.

An answer function returns the answer's name, ``None`` when the manifest does not say (a gap), or
``NOT_APPLICABLE`` when the question does not arise for this component (no data held, no languages
required). ``ANSWERS`` lists, per function, every answer it can give: a criteria set is refused when
its ladder and the function disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sovstack.assess.manifest import Component
from sovstack.assess.stack import ALLIED, DOMESTIC, FOREIGN, UNKNOWN, Stack, Standing
from sovstack.core.jurisdictions import catalogue

NOT_APPLICABLE = "n/a"
RECENT_TEST = timedelta(days=365)
PARTY_ANSWERS = ("domestic", "allied", "foreign_not_reached", "local_subsidiary_reached", "foreign_reached")

Answer = str | None


@dataclass(frozen=True)
class AnswerRule:
    fn: Callable[[Component, Stack], Answer]
    answers: tuple[str, ...]


def party_answer(standing: Standing | None) -> Answer:
    """How far a party is from home's control, by its place, its parent's, and foreign laws reaching it."""
    if standing is None or standing.own == UNKNOWN:
        return None
    if standing.reached:
        return "local_subsidiary_reached" if standing.own == DOMESTIC else "foreign_reached"
    places = {standing.own, standing.parent}
    if places == {DOMESTIC}:
        return "domestic"
    if FOREIGN in places:
        return "foreign_not_reached"
    return "allied" if UNKNOWN not in places else None


def operator_control(comp: Component, stack: Stack) -> Answer:
    return party_answer(stack.standing(comp.operator))


def supplier_control(comp: Component, stack: Stack) -> Answer:
    return party_answer(stack.standing(comp.supplier))


def ultimate_parent(comp: Component, stack: Stack) -> Answer:
    """The further of the supplier's and the operator's ultimate parents."""
    places = [s.parent for s in (stack.standing(comp.supplier), stack.standing(comp.operator)) if s is not None]
    if not places or UNKNOWN in places:
        return None
    for place in (FOREIGN, ALLIED):
        if place in places:
            return place
    return DOMESTIC


def hosting(comp: Component, stack: Stack) -> Answer:
    if not comp.hosted_in:
        return None
    places = {stack.place(code) for code in comp.hosted_in}
    if places == {DOMESTIC}:
        return "domestic"
    if FOREIGN not in places:
        return "allied"
    return "foreign" if places == {FOREIGN} else "mixed"


def key_custody(comp: Component, stack: Stack) -> Answer:
    if not comp.holds_data:
        return NOT_APPLICABLE
    holder = comp.keys_held_by
    if holder is None:
        return None
    if holder in ("customer", "none"):
        return "customer" if holder == "customer" else "unencrypted"
    answer = party_answer(stack.standing(comp.operator if holder == "operator" else comp.supplier))
    if answer is None:
        return None
    if answer in ("domestic", "allied"):
        return "holder_domestic"
    return "holder_foreign" if answer == "foreign_not_reached" else "holder_reached"


def remote_disable(comp: Component, stack: Stack) -> Answer:
    if comp.remote_disable is None:
        return None
    if not comp.remote_disable:
        return "no"
    return "yes_domestic" if supplier_control(comp, stack) == "domestic" else "yes_foreign"


def substitute(comp: Component, stack: Stack) -> Answer:
    if not comp.substitutes:
        return "none"
    tested = [s.tested for s in comp.substitutes if s.tested is not None]
    if not tested:
        return "untested"
    return "tested" if stack.manifest.as_of - max(tested) <= RECENT_TEST else "tested_stale"


def export_control(comp: Component, stack: Stack) -> Answer:
    ec = comp.export_control
    if ec is None:
        return None
    if not ec.controlled:
        return "not_controlled"
    regime = next((r for r in catalogue().regimes if r.id == ec.regime), None)
    if regime is None:
        return "foreign_regime"
    if not regime.jurisdiction:
        return "multilateral"
    members = catalogue().expand([regime.jurisdiction])
    return "home_regime" if stack.home in members else "foreign_regime"


def openness(comp: Component, stack: Stack) -> Answer:
    source, weights = comp.open.source, comp.open.weights
    if comp.layer == "models":
        if weights is None:
            return None
        if weights:
            return "open" if source else "open_weights"
        return "closed"
    if source is None:
        return None
    return "open" if source else "closed"


def lock_in(comp: Component, stack: Stack) -> Answer:
    return comp.lock_in


def weights_local(comp: Component, stack: Stack) -> Answer:
    if comp.weights_local is None:
        return None
    if not comp.weights_local:
        return "api_only"
    return "local_open" if comp.open.weights else "local_licensed"


def fine_tunable(comp: Component, stack: Stack) -> Answer:
    if comp.fine_tunable is None:
        return None
    if not comp.fine_tunable:
        return "no"
    return "locally" if comp.weights_local else "via_vendor"


def language_coverage(comp: Component, stack: Stack) -> Answer:
    required = {tag.split("-")[0].lower() for tag in stack.manifest.languages}
    if not required:
        return NOT_APPLICABLE
    if not comp.languages:
        # Storage holds no language of its own; only datasets that list languages are assessed.
        return NOT_APPLICABLE if comp.layer == "data" else None
    share = len(required & {tag.split("-")[0].lower() for tag in comp.languages}) / len(required)
    if share >= 1:
        return "all"
    if share >= 0.5:
        return "most"
    return "some" if share > 0 else "none"


def portability(comp: Component, stack: Stack) -> Answer:
    return comp.exit.data_export


ANSWERS: dict[str, AnswerRule] = {
    "operator_control": AnswerRule(operator_control, PARTY_ANSWERS),
    "supplier_control": AnswerRule(supplier_control, PARTY_ANSWERS),
    "ultimate_parent": AnswerRule(ultimate_parent, (DOMESTIC, ALLIED, FOREIGN)),
    "hosting": AnswerRule(hosting, ("domestic", "allied", "mixed", "foreign")),
    "key_custody": AnswerRule(key_custody, ("customer", "holder_domestic", "holder_foreign", "holder_reached",
                                            "unencrypted")),
    "remote_disable": AnswerRule(remote_disable, ("no", "yes_domestic", "yes_foreign")),
    "substitute": AnswerRule(substitute, ("tested", "tested_stale", "untested", "none")),
    "export_control": AnswerRule(export_control, ("not_controlled", "home_regime", "multilateral", "foreign_regime")),
    "openness": AnswerRule(openness, ("open", "open_weights", "closed")),
    "lock_in": AnswerRule(lock_in, ("none", "portable", "single_vendor")),
    "weights_local": AnswerRule(weights_local, ("local_open", "local_licensed", "api_only")),
    "fine_tunable": AnswerRule(fine_tunable, ("locally", "via_vendor", "no")),
    "language_coverage": AnswerRule(language_coverage, ("all", "most", "some", "none")),
    "portability": AnswerRule(portability, ("open", "proprietary", "none")),
}
