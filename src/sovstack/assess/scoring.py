"""Scoring: answer every criterion for every component, then gate, weighted score, pressures, layers.

Modes say how an answer without valid evidence counts (a gap is always reported as such):

- ``tolerant``: as declared; an answer the manifest does not give is left out of every figure.
- ``conservative``: one rung down the ladder; an answer not given counts as the worst rung.
- ``strict``: the worst rung; low-confidence evidence does not count as evidence.

Claiming the worst rung needs no evidence: there is nothing to doubt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from statistics import fmean

from sovstack.assess.answers import ANSWERS, NOT_APPLICABLE
from sovstack.assess.criteria import PRESSURES, CriteriaSet, Criterion, Profile, Rung, load_criteria, profile
from sovstack.assess.manifest import LAYERS, Component, Manifest
from sovstack.assess.results import Assessment, EvidenceRef, Figure, Gaps, Gate, LayerFinding, Mode, Result
from sovstack.assess.stack import Stack
from sovstack.core.errors import BadInput

CONTROL_POINTS = 70.0
DEPEND_POINTS = 45.0


def assess(manifest: Manifest, criteria: CriteriaSet | None = None, weights: Profile | None = None,
           mode: Mode = "conservative") -> Assessment:
    """Score a checked manifest: every answer, the gate, the weighted score, pressures and layers."""
    if mode not in ("tolerant", "conservative", "strict"):
        raise BadInput(f"unknown mode {mode!r}: tolerant, conservative or strict", field="mode")
    criteria = criteria or load_criteria()
    weights = weights or profile()
    stack = Stack(manifest)
    results = answer_all(stack, criteria, mode)
    objectives = _objective_figures(results, criteria)
    assessed = {k: v for k, v in objectives.items() if v.value is not None}
    return Assessment(
        manifest=manifest.name, home=manifest.home, as_of=manifest.as_of, criteria=criteria.ref,
        profile=weights.id, mode=mode, gate=gate_of(results, criteria), score=_weighted(assessed, weights),
        objectives=objectives, not_assessed=tuple(k for k, v in objectives.items() if v.value is None),
        pressures=_pressure_figures(results, criteria), layers=_layer_findings(results),
        gaps=_gaps(results), results=results)


def answer_all(stack: Stack, criteria: CriteriaSet, mode: Mode) -> list[Result]:
    """One result per (component, applicable criterion), in manifest then criteria order."""
    by_layer: dict[str, list[Criterion]] = {layer: [c for c in criteria.criteria if layer in c.layers]
                                            for layer in LAYERS}
    ladders = {c.id: Ladder(c) for c in criteria.criteria}
    results: list[Result] = []
    for comp in stack.manifest.components:
        backing = _backing(comp, stack, mode)
        for criterion in by_layer[comp.layer]:
            declared = ANSWERS[criterion.answer].fn(comp, stack)
            if declared != NOT_APPLICABLE:
                results.append(_result(comp, ladders[criterion.id], declared, backing, mode))
    return results


class Ladder:
    """A criterion's rungs looked up by answer, with the one below each and the worst (built once per run)."""

    def __init__(self, criterion: Criterion) -> None:
        self.criterion = criterion
        self.rung = {r.answer: r for r in criterion.ladder}
        self.below = {r.answer: criterion.below(r.answer) for r in criterion.ladder}
        self.worst = criterion.worst


Backing = dict[str, tuple[str | None, tuple[EvidenceRef, ...]]]


def _backing(comp: Component, stack: Stack, mode: Mode) -> Backing:
    """Per claim: why it is unbacked (None when backed) and the valid evidence for it."""
    as_of = stack.manifest.as_of
    found: dict[str, list[EvidenceRef]] = defaultdict(list)
    reasons: dict[str, str] = {}
    for ev in comp.evidence:
        ref = EvidenceRef(ev.type, ev.source, ev.date, ev.expires, ev.confidence)
        if ev.date > as_of:
            problem: str | None = "evidence dated after the assessment date"
        elif ev.expires is not None and ev.expires < as_of:
            problem = "expired evidence"
        elif mode == "strict" and ev.confidence == "low":
            problem = "low-confidence evidence"
        else:
            problem = None
        for claim in ev.claims:
            if problem is None:
                found[claim].append(ref)
            else:
                reasons.setdefault(claim, problem)
    return {claim: (None, tuple(refs)) for claim, refs in found.items()} | {
        claim: (why, ()) for claim, why in reasons.items() if claim not in found}


def _result(comp: Component, ladder: Ladder, declared: str | None, backing: Backing, mode: Mode) -> Result:
    criterion = ladder.criterion
    if declared is None:
        rung = None if mode == "tolerant" else ladder.worst
        return _made(comp, criterion, None, rung, "unknown", ())
    evidence: tuple[EvidenceRef, ...] = ()
    gap: str | None = None
    for claim in criterion.claims:
        why, refs = backing.get(claim, ("no evidence", ()))
        evidence += tuple(ref for ref in refs if ref not in evidence)
        gap = gap or why
    if gap is None or declared == ladder.worst.answer:
        return _made(comp, criterion, declared, ladder.rung[declared], None, evidence)
    counted = {"tolerant": ladder.rung[declared], "conservative": ladder.below[declared], "strict": ladder.worst}[mode]
    return _made(comp, criterion, declared, counted, gap, evidence)


def _made(comp: Component, criterion: Criterion, declared: str | None, rung: Rung | None, gap: str | None,
          evidence: tuple[EvidenceRef, ...]) -> Result:
    return Result(criterion.id, comp.id, comp.layer, declared, rung.answer if rung else None,
                  rung.points if rung else None, rung.level if rung else None, gap, evidence)


def figure(results: list[Result], indices: Iterable[int]) -> Figure:
    """The mean points of the counted results among ``indices``, with the indices it used."""
    basis = tuple(i for i in indices if results[i].points is not None)
    if not basis:
        return Figure(None, ())
    return Figure(round(fmean(results[i].points or 0.0 for i in basis), 1), basis)


def _objective_figures(results: list[Result], criteria: CriteriaSet) -> dict[str, Figure]:
    objective_of = {c.id: c.objective for c in criteria.criteria}
    groups: dict[str, list[int]] = {key: [] for key in criteria.objectives}
    for i, r in enumerate(results):
        groups[objective_of[r.criterion]].append(i)
    return {key: figure(results, idx) for key, idx in groups.items()}


def _weighted(objectives: dict[str, Figure], weights: Profile) -> Figure:
    used = {k: weights.weights.get(k, 0.0) for k in objectives if weights.weights.get(k, 0.0) > 0}
    total = sum(used.values())
    if not total:
        return Figure(None, ())
    value = sum((objectives[k].value or 0.0) * w for k, w in used.items()) / total
    basis = tuple(sorted(i for k in used for i in objectives[k].basis))
    return Figure(round(value, 1), basis)


def _pressure_figures(results: list[Result], criteria: CriteriaSet) -> dict[str, Figure]:
    pressures_of = {c.id: c.pressures for c in criteria.criteria}
    groups: dict[str, list[int]] = {p: [] for p in PRESSURES}
    for i, r in enumerate(results):
        for p in pressures_of[r.criterion]:
            groups[p].append(i)
    return {p: figure(results, idx) for p, idx in groups.items()}


def _layer_findings(results: list[Result]) -> dict[str, LayerFinding]:
    """Per layer: Control when strong throughout, Depend when weak on average, Steer in between."""
    groups: dict[str, list[int]] = {layer: [] for layer in LAYERS}
    for i, r in enumerate(results):
        groups[r.layer].append(i)
    out: dict[str, LayerFinding] = {}
    for layer, idx in groups.items():
        fig = figure(results, idx)
        levels = [level for i in fig.basis if (level := results[i].level) is not None]
        lowest = min(levels) if levels else None
        if fig.value is None or lowest is None:
            label = "Not assessed"
        elif fig.value >= CONTROL_POINTS and lowest >= 2:
            label = "Control"
        elif fig.value < DEPEND_POINTS:
            label = "Depend"
        else:
            label = "Steer"
        out[layer] = LayerFinding(layer, label, fig, lowest)  # type: ignore[arg-type]
    return out


def gate_of(results: list[Result], criteria: CriteriaSet) -> Gate:
    """The lowest counted level outside the exempt layers, naming every answer at that level."""
    exempt = set(criteria.gate_exempt_layers)
    counted = [(r.level, i) for i, r in enumerate(results) if r.level is not None and r.layer not in exempt]
    if not counted:
        return Gate(None, (), "no counted answer: nothing to gate on")
    lowest = min(level for level, _ in counted)
    set_by = tuple(i for level, i in counted if level == lowest)
    named = ", ".join(f"{results[i].criterion} on {results[i].component} ({results[i].counted})" for i in set_by[:3])
    more = f" and {len(set_by) - 3} more" if len(set_by) > 3 else ""
    return Gate(lowest, set_by, f"level {lowest}, set by {named}{more}")


def _gaps(results: list[Result]) -> Gaps:
    idx = tuple(i for i, r in enumerate(results) if r.gap is not None)
    by_reason: dict[str, int] = defaultdict(int)
    for i in idx:
        by_reason[results[i].gap or ""] += 1
    return Gaps(len(idx), dict(by_reason), idx)
