"""Expanding a number: the answers, rungs, gaps and evidence behind any figure of an assessment."""

from __future__ import annotations

from typing import Any

from sovstack.assess.results import Assessment, Figure, Result
from sovstack.core.errors import NotFound


def figure_keys(assessment: Assessment) -> list[str]:
    """Every key ``explain`` accepts: score, gate, gaps, objectives.X, pressures.X, layers.X."""
    return (["score", "gate", "gaps"] + [f"objectives.{k}" for k in assessment.objectives]
            + [f"pressures.{k}" for k in assessment.pressures] + [f"layers.{k}" for k in assessment.layers])


def basis_of(assessment: Assessment, key: str) -> tuple[float | int | None, tuple[int, ...]]:
    """The value a key names and the indices of the results it was computed from."""
    if key == "score":
        return assessment.score.value, assessment.score.basis
    if key == "gate":
        return assessment.gate.level, assessment.gate.set_by
    if key == "gaps":
        return assessment.gaps.count, assessment.gaps.results
    group, _, name = key.partition(".")
    table: dict[str, Figure] | None = {
        "objectives": assessment.objectives, "pressures": assessment.pressures,
        "layers": {k: v.points for k, v in assessment.layers.items()}}.get(group)
    if table is None or name not in table:
        raise NotFound(f"no figure {key!r}; try one of: {', '.join(figure_keys(assessment))}", field="explain")
    return table[name].value, table[name].basis


def expand(assessment: Assessment, key: str) -> dict[str, Any]:
    """A figure with every answer behind it, each with its rung, gap and evidence."""
    value, basis = basis_of(assessment, key)
    return {"figure": key, "value": value, "mode": assessment.mode,
            "answers": [result_row(assessment.results[i]) for i in basis]}


def result_row(r: Result) -> dict[str, Any]:
    return {
        "criterion": r.criterion, "component": r.component, "layer": r.layer, "declared": r.declared,
        "counted": r.counted, "points": r.points, "level": r.level, "gap": r.gap,
        "evidence": [{"type": e.type, "source": e.source, "date": e.date.isoformat(),
                      "expires": e.expires.isoformat() if e.expires else None, "confidence": e.confidence}
                     for e in r.evidence],
    }
