"""What an assessment says, as plain data: every figure keeps the indices of the answers behind it.

These dataclasses are the engine's output and, through ``pydantic.TypeAdapter``, the published JSON
schema of the report (``sovstack assess schema --what report``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["tolerant", "conservative", "strict"]
MODES: tuple[str, ...] = ("tolerant", "conservative", "strict")
LayerLabel = Literal["Control", "Steer", "Depend", "Not assessed"]


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """One piece of evidence as the report shows it."""

    type: str
    source: str
    date: dt.date
    expires: dt.date | None
    confidence: str


@dataclass(frozen=True, slots=True)
class Result:
    """One criterion answered for one component: what the manifest says, and what the mode counted."""

    criterion: str
    component: str
    layer: str
    declared: str | None
    counted: str | None
    points: float | None
    level: int | None
    gap: str | None
    evidence: tuple[EvidenceRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Figure:
    """A number (0–100 unless said otherwise) and the indices into ``results`` it was computed from."""

    value: float | None
    basis: tuple[int, ...] = ()


@dataclass(frozen=True)
class Gate:
    """The lowest level any counted answer reached, and the answers that set it."""

    level: int | None
    set_by: tuple[int, ...]
    summary: str


@dataclass(frozen=True)
class LayerFinding:
    layer: str
    label: LayerLabel
    points: Figure
    lowest_level: int | None


@dataclass(frozen=True)
class Gaps:
    """Answers not backed by valid evidence, by reason, and how the mode counted them."""

    count: int
    by_reason: dict[str, int]
    results: tuple[int, ...]


@dataclass(frozen=True)
class TimelineStep:
    day: float
    residual: float
    events: tuple[str, ...]


@dataclass(frozen=True)
class ComponentOutcome:
    component: str
    state: Literal["stopped", "degraded", "exposed", "failed_over", "lost"]
    cause: str
    recovers_after_days: float | None
    via: str | None = None


@dataclass(frozen=True)
class DrillResult:
    """A disruption scenario run on the stack: what stops, degrades or fails over, and the service left."""

    scenario: str
    title: str
    effective: dt.date
    sources: tuple[str, ...]
    residual_now: float
    residual_final: float
    time_to_recover_days: float | None
    fully_recovered: bool
    outcomes: tuple[ComponentOutcome, ...]
    timeline: tuple[TimelineStep, ...]
    exposed_share: float = 0.0


@dataclass(frozen=True)
class ExitFinding:
    """Whether one component can be left: export formats, substitutes and switch time against a rule."""

    component: str
    layer: str
    data_export: str | None
    config_export: str | None
    substitute: str | None
    tested: bool
    switch_days: float | None
    allowed_days: float
    within_rule: bool | None
    verdict: Literal["ready", "partial", "not_ready"]
    reasons: tuple[str, ...]


@dataclass
class Assessment:
    """The full result: gate and weighted score side by side, never merged into one number."""

    manifest: str
    home: str
    as_of: dt.date
    criteria: str
    profile: str
    mode: Mode
    gate: Gate
    score: Figure
    objectives: dict[str, Figure]
    not_assessed: tuple[str, ...]
    pressures: dict[str, Figure]
    layers: dict[str, LayerFinding]
    gaps: Gaps
    results: list[Result]
    drills: list[DrillResult] = field(default_factory=list)
    exit: list[ExitFinding] = field(default_factory=list)
    exit_rule: str = ""
    report_version: str = "1"
