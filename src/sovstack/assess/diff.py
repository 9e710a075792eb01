"""Comparing two assessments (before/after a change, option A against B): what moved, by how much, why."""

from __future__ import annotations

from dataclasses import dataclass

from sovstack.assess.results import Assessment, Figure, Result


@dataclass(frozen=True)
class Move:
    """One figure that changed, and the answers that changed under it."""

    figure: str
    before: float | int | str | None
    after: float | int | str | None
    delta: float | None
    why: tuple[str, ...]


@dataclass(frozen=True)
class AssessmentDiff:
    before: str
    after: str
    moves: tuple[Move, ...]
    answers_changed: tuple[str, ...]
    drills: tuple[Move, ...]


def diff(before: Assessment, after: Assessment) -> AssessmentDiff:
    """Every figure that differs between two assessments, explained by the answers that changed."""
    old = {(r.criterion, r.component): r for r in before.results}
    new = {(r.criterion, r.component): r for r in after.results}
    changed = {key: _change(old.get(key), new.get(key)) for key in {*old, *new}}
    changed = {k: v for k, v in changed.items() if v}
    moves: list[Move] = []
    if before.gate.level != after.gate.level or before.gate.summary != after.gate.summary:
        moves.append(Move("gate", before.gate.level, after.gate.level,
                          _delta(before.gate.level, after.gate.level), (f"before: {before.gate.summary}",
                                                                        f"after: {after.gate.summary}")))
    pairs = [("score", before.score, after.score)]
    for group in ("objectives", "pressures"):
        b, a = getattr(before, group), getattr(after, group)
        pairs += [(f"{group}.{k}", b.get(k, Figure(None)), a.get(k, Figure(None))) for k in {*b, *a}]
    for key, b_fig, a_fig in sorted(pairs, key=lambda p: p[0]):
        if b_fig.value != a_fig.value:
            keys = _keys(before.results, b_fig) | _keys(after.results, a_fig)
            moves.append(Move(key, b_fig.value, a_fig.value, _delta(b_fig.value, a_fig.value),
                              tuple(changed[k] for k in sorted(keys) if k in changed)))
    for layer in after.layers:
        b_label, a_label = before.layers[layer].label, after.layers[layer].label
        if b_label != a_label:
            moves.append(Move(f"layers.{layer}", b_label, a_label, None,
                              tuple(v for k, v in sorted(changed.items()) if _layer_of(k, old, new) == layer)))
    return AssessmentDiff(before.manifest, after.manifest, tuple(moves), tuple(changed[k] for k in sorted(changed)),
                          _drill_moves(before, after))


def _change(b: Result | None, a: Result | None) -> str:
    if b is None and a is not None:
        return f"{a.criterion} on {a.component}: new, {a.counted} ({a.points} points)"
    if a is None and b is not None:
        return f"{b.criterion} on {b.component}: gone (was {b.counted}, {b.points} points)"
    assert a is not None and b is not None
    if (b.counted, b.points, b.gap) == (a.counted, a.points, a.gap):
        return ""
    gap = f"; gap {b.gap or 'none'} → {a.gap or 'none'}" if b.gap != a.gap else ""
    return f"{a.criterion} on {a.component}: {b.counted} ({b.points}) → {a.counted} ({a.points}){gap}"


def _keys(results: list[Result], fig: Figure) -> set[tuple[str, str]]:
    return {(results[i].criterion, results[i].component) for i in fig.basis}


def _layer_of(key: tuple[str, str], old: dict[tuple[str, str], Result], new: dict[tuple[str, str], Result]) -> str:
    found = new.get(key) or old.get(key)
    return found.layer if found else ""


def _delta(b: float | int | None, a: float | int | None) -> float | None:
    return round(a - b, 1) if a is not None and b is not None else None


def _drill_moves(before: Assessment, after: Assessment) -> tuple[Move, ...]:
    old = {d.scenario: d for d in before.drills}
    out: list[Move] = []
    for d in after.drills:
        b = old.get(d.scenario)
        if b is None:
            continue
        for name in ("residual_now", "residual_final", "time_to_recover_days"):
            bv, av = getattr(b, name), getattr(d, name)
            if bv != av:
                lost_before = {o.component for o in b.outcomes if o.state in ("lost", "stopped")}
                lost_after = {o.component for o in d.outcomes if o.state in ("lost", "stopped")}
                why = [f"{c} no longer down" for c in sorted(lost_before - lost_after)]
                why += [f"{c} now down" for c in sorted(lost_after - lost_before)]
                out.append(Move(f"drills.{d.scenario}.{name}", bv, av, _delta(bv, av), tuple(why)))
    return tuple(out)
