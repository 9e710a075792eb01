"""Reproducible synthetic allocation rounds for tests and the benchmark.

The shape follows the reference instance (docs: compute-exchange §4): one dominant provider
with most of the capacity, demand well above capacity, GPU types from three chip vendors, a
quarter of providers foreign-controlled, and eligibility filtered by GPU type and residency.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sovstack.compute.model import Caps, Offer, Request, Round

# GPU type -> (chip vendor, typical price per GPU-hour, share of offers)
GPU_TYPES: dict[str, tuple[str, float, float]] = {
    "H100": ("NVIDIA", 2.6, 0.40), "H200": ("NVIDIA", 3.6, 0.15), "MI300X": ("AMD", 2.3, 0.15),
    "L40S": ("NVIDIA", 1.6, 0.15), "Gaudi2": ("Intel", 1.7, 0.15),
}
# what a job can run on: the training-class accelerators, CUDA only, or Hopper only
TYPE_SETS = (frozenset({"H100", "H200", "MI300X", "Gaudi2"}), frozenset({"H100", "H200", "L40S"}),
             frozenset({"H100", "H200"}))
JOB_GPUS = ((1, 10), (2, 10), (4, 15), (8, 30), (16, 17), (32, 12), (64, 6))
# job length as a share of the round: funded projects mostly run for most of the round
JOB_SPAN = ((50, 20), (75, 30), (100, 50))
CATEGORIES = (("startup", 0.5, 0.25, 0.5), ("academic", 0.35, 0.6, 0.9), ("public", 0.15, 0.4, 0.7))
PERIOD_HOURS = 168.0


@dataclass(frozen=True)
class Shape:
    """The sizes a synthetic round is drawn with."""

    requests: int
    offers: int
    providers: int
    periods: int
    dominant_share: float
    demand_ratio: float


def generate(seed: int, requests: int = 2000, offers: int = 50, providers: int = 12, dominant_share: float = 0.6,
             demand_ratio: float = 1.8, budget_ratio: float = 0.45, cap: float = 0.4,
             periods: int | None = None) -> Round:
    """A deterministic round: same arguments, same round.

    ``budget_ratio`` is the budget as a share of the subsidy the whole demand would cost at the
    mean price of each request's eligible offers; ``cap`` is the provider cap (groups get
    ``cap + 0.1``, foreign-controlled offers 0.3, chip vendors 0.85).
    """
    rng = random.Random(seed)
    shape = Shape(requests, offers, providers, periods or rng.randint(4, 12), dominant_share, demand_ratio)
    demand = _requests(rng, shape)
    offer_list = _offers(rng, shape, sum(r.gpu_hours for r in demand))
    demand = _eligibility(rng, demand, offer_list)
    subsidy = sum(r.gpu_hours * r.subsidy_rate * _mean_price(r, offer_list) for r in demand)
    caps = Caps(provider=cap, group=min(1.0, cap + 0.1), foreign=0.3, chip_vendor=0.85)
    return Round(requests=tuple(demand), offers=tuple(offer_list), period_hours=PERIOD_HOURS,
                 budget=budget_ratio * subsidy, caps=caps)


def _pick(rng: random.Random, weighted: tuple[tuple[int, int], ...]) -> int:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _requests(rng: random.Random, shape: Shape) -> list[Request]:
    out = []
    for index in range(shape.requests):
        weeks = max(1, round(shape.periods * _pick(rng, JOB_SPAN) / 100))
        gpus = _pick(rng, JOB_GPUS)
        hours = PERIOD_HOURS * (weeks - 1 + rng.uniform(0.4, 1.0))
        earliest = rng.randint(0, shape.periods - weeks)
        slack = rng.choice((0, 0, 0, 0, 1, 1, 2))
        category, _, low, high = rng.choices(CATEGORIES, weights=[c[1] for c in CATEGORIES])[0]
        out.append(Request(
            id=index + 1, category=category, merit=round(rng.uniform(1.0, 10.0), 1),
            gpu_hours=round(gpus * hours, 1), gpus=gpus, earliest=earliest,
            latest=min(shape.periods - 1, earliest + weeks - 1 + slack),
            eligible=frozenset(), subsidy_rate=round(rng.uniform(low, high), 2)))
    return out


def _offers(rng: random.Random, shape: Shape, demand_hours: float) -> list[Offer]:
    """Offers sized so the dominant provider holds its share and capacity = demand / ratio."""
    names = [f"prov{k:02d}" for k in range(shape.providers)]
    foreign_from = shape.providers - max(1, shape.providers // 4)
    dominant_offers = max(1, round(shape.offers * 0.3))
    raw: list[tuple[int, str, float, tuple[int, ...]]] = []
    for index in range(shape.offers):
        owner = 0 if index < dominant_offers else 1 + (index - dominant_offers) % max(1, shape.providers - 1)
        gpu_type = rng.choices(list(GPU_TYPES), weights=[v[2] for v in GPU_TYPES.values()])[0]
        raw.append((min(owner, shape.providers - 1), gpu_type, rng.uniform(0.5, 2.0), _availability(rng, shape)))
    hours = [size * len(avail) * PERIOD_HOURS for _, _, size, avail in raw]
    dominant_hours = sum(h for (owner, *_), h in zip(raw, hours, strict=True) if owner == 0)
    capacity = demand_hours / shape.demand_ratio
    scale_dominant = shape.dominant_share * capacity / dominant_hours if shape.providers > 1 else 0.0
    scale_rest = (1 - shape.dominant_share) * capacity / max(1e-9, sum(hours) - dominant_hours)
    out = []
    for index, (owner, gpu_type, size, avail) in enumerate(raw):
        scale = scale_dominant if owner == 0 and shape.providers > 1 else scale_rest
        vendor, price, _ = GPU_TYPES[gpu_type]
        group = names[owner] if owner < 1 or owner > 4 else f"group{(owner + 1) // 2}"
        out.append(Offer(
            id=index + 1, provider=names[owner], group=group, foreign=owner >= foreign_from,
            chip_vendor=vendor, gpu_type=gpu_type, gpus=max(8, 8 * round(size * scale / 8)),
            price=round(price * rng.uniform(0.8, 1.2), 2), periods=avail))
    return out


def _availability(rng: random.Random, shape: Shape) -> tuple[int, ...]:
    """Most offers run the whole round; some come online late or leave early."""
    if rng.random() < 0.75:
        return tuple(range(shape.periods))
    first = rng.randint(0, shape.periods // 2)
    last = rng.randint(max(first, shape.periods // 2), shape.periods - 1)
    return tuple(range(first, last + 1))


def _eligibility(rng: random.Random, demand: list[Request], offers: list[Offer]) -> list[Request]:
    """Each request accepts a set of GPU types; public and some others need domestic control."""
    out = []
    for request in demand:
        types = rng.choice(TYPE_SETS)
        domestic = rng.random() < (0.7 if request.category == "public" else 0.3)
        eligible = frozenset(o.id for o in offers if o.gpu_type in types and not (domestic and o.foreign))
        out.append(Request(**{**request.__dict__, "eligible": eligible}))
    return out


def _mean_price(request: Request, offers: list[Offer]) -> float:
    prices = [o.price for o in offers if o.id in request.eligible]
    return sum(prices) / len(prices) if prices else 0.0
