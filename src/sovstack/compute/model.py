"""The allocation round and its answer: plain frozen records shared by every allocator module."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

CAP_KINDS = ("provider", "group", "foreign", "chip_vendor")


@dataclass(frozen=True)
class Offer:
    """GPUs a provider offers to the programme, at one price, in some periods."""

    id: int
    provider: str            # provider name
    group: str               # corporate group (ultimate parent)
    foreign: bool            # foreign-controlled (owner/parent/control plane outside home)
    chip_vendor: str         # e.g. "NVIDIA", "AMD"
    gpu_type: str            # e.g. "H100"
    gpus: int                # GPUs available in each period it is available
    price: float             # per GPU-hour
    periods: tuple[int, ...]  # period indices (0-based) in which the offer is available


@dataclass(frozen=True)
class Request:
    """An applicant's job: GPU-hours wanted as one gang, inside a window, on eligible offers."""

    id: int
    category: str            # applicant category, e.g. "startup", "academic", "public"
    merit: float             # > 0; reviewers' mean score (higher is better)
    gpu_hours: float         # > 0
    gpus: int                # GPUs per job; the job is placed whole on one offer (gang)
    earliest: int            # first period the job may start
    latest: int              # last period the job may still be running in
    eligible: frozenset[int]  # offer ids allowed by policy/residency/GPU type (computed by the caller)
    subsidy_rate: float      # 0..1, share of cost the programme pays


@dataclass(frozen=True)
class Caps:
    """Maximum share of all allocated GPU-hours per provider, group, foreign control, chip vendor."""

    provider: float | None = None
    group: float | None = None
    foreign: float | None = None
    chip_vendor: float | None = None


@dataclass(frozen=True)
class Placement:
    """One request placed on one offer for consecutive periods, with what it costs the programme."""

    request: int
    offer: int
    start: int
    periods: tuple[int, ...]
    gpu_hours: float
    cost: float
    subsidy: float
    gpus: int = 0        # GPUs held in each period; needed for fixed placements of requests not in the round
    category: str = ""   # the request's category; needed for fixed placements' share of category bounds


@dataclass(frozen=True)
class Round:
    """Everything one allocation round decides over; see ``allocator`` for the model."""

    requests: tuple[Request, ...]
    offers: tuple[Offer, ...]
    period_hours: float = 168.0
    budget: float = math.inf
    category_floor: Mapping[str, float] = field(default_factory=dict)
    category_ceiling: Mapping[str, float] = field(default_factory=dict)
    caps: Caps = Caps()
    fixed: tuple[Placement, ...] = ()
    previous: Mapping[int, int] = field(default_factory=dict)
    stability_bonus: float = 0.0
    cost_weight: float = 0.0
    gap_limit: float = 0.01
    time_limit: float = 10.0
    workers: int = 2


@dataclass(frozen=True)
class Explanation:
    """Why a request was placed where it was, or which constraints kept it out."""

    request: int
    allocated: bool
    binding: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Result:
    """The allocation, its value, the proven bound and gap, and the reasons behind each decision."""

    status: str
    placements: tuple[Placement, ...]
    objective: float
    bound: float
    gap: float
    greedy_objective: float
    seconds: float
    solver: str
    explanations: Mapping[int, Explanation]
    conflicts: tuple[str, ...]
    log: tuple[str, ...]
