"""Which deployments may serve a request, in which order: policy, cut-offs, circuits, priority, weight."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sovstack.core import policy
from sovstack.core.context import Principal

if TYPE_CHECKING:
    from sovstack.gateway.facts import DeploymentFacts

FAILURES_TO_OPEN = 3
TIERS = {"high": 0, "medium": 1, "low": 2}
COOL_DOWN_SECONDS = 30.0


@dataclass
class Breaker:
    """Per-deployment circuit: opens after repeated failures, lets one probe through after a cool-down."""

    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def state(self, now: float | None = None) -> str:
        if self.opened_at is None:
            return "closed"
        now = time.monotonic() if now is None else now
        return "half-open" if now - self.opened_at >= COOL_DOWN_SECONDS else "open"

    def allows(self) -> bool:
        state = self.state()
        if state == "closed":
            return True
        if state == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def succeeded(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failed(self) -> None:
        self.failures += 1
        self.probing = False
        if self.failures >= FAILURES_TO_OPEN:
            self.opened_at = time.monotonic()


@dataclass
class Breakers:
    """The circuits of one server process (each replica learns for itself)."""

    by_deployment: dict[int, Breaker] = field(default_factory=dict)

    def of(self, deployment_id: int) -> Breaker:
        return self.by_deployment.setdefault(deployment_id, Breaker())

    def state(self, deployment_id: int) -> str:
        found = self.by_deployment.get(deployment_id)
        return found.state() if found else "closed"


@dataclass(frozen=True)
class Candidate:
    """A deployment the request may go to, with what is needed to call it (no ORM object on the hot path)."""

    id: int
    name: str
    base_url: str
    upstream_model: str
    api_key: str
    timeout: float
    price_in: float
    price_out: float
    priority: int
    weight: int
    languages: tuple[str, ...]
    facts: dict[str, Any]
    tiers: dict[str, int] = field(default_factory=dict)  # language → 0 high, 1 medium, 2 low
    backend: str = "openai"  # how it is called: gateway/backends.py


@dataclass
class Plan:
    allowed: list[Candidate]
    refused: dict[str, list[str]]


def plan(doc: policy.PolicyDocument, who: Principal | None, classification: str,
         deployments: Sequence[DeploymentFacts]) -> Plan:
    """Split deployments into those the policy allows for this classification and those it refuses (why)."""
    allowed, refused = [], {}
    for dep in deployments:
        if dep.withdrawn:
            refused[dep.name] = [f"withdrawn: {dep.withdrawn_reason or 'cut off'}"]
            continue
        decision = policy.decide(doc, who, "process", policy.Resource(
            classification=classification, party=dep.operator, hosting_jurisdiction=dep.hosting_jurisdiction,
            developer=dep.developer, open_weights=dep.open_weights, licence=dep.licence))
        if not decision.allowed:
            refused[dep.name] = decision.reasons
            continue
        allowed.append(Candidate(
            id=dep.id, name=dep.name, base_url=dep.base_url, upstream_model=dep.upstream_model,
            api_key=dep.api_key, timeout=dep.timeout_seconds, price_in=dep.price_in,
            price_out=dep.price_out, priority=dep.priority, weight=dep.weight,
            languages=tuple(t["code"].split("-")[0].lower() for t in dep.languages),
            tiers={t["code"].split("-")[0].lower(): TIERS.get(t.get("tier", "medium"), 1) for t in dep.languages},
            facts={"hosting": dep.hosting_jurisdiction, "operator": dep.operator.name,
                   "developer": dep.developer.name}, backend=dep.backend))
    return Plan(allowed, refused)


_RNG = random.Random()  # seeded once: a new Random per request reads the OS entropy source each time


def order(candidates: list[Candidate], language: str | None = None,
          rng: random.Random | None = None) -> list[Candidate]:
    """Deployments best at the language first (by quality tier); then by priority; weighted within a priority."""
    if len(candidates) < 2:
        return list(candidates)
    rng = rng or _RNG

    def key(c: Candidate) -> tuple[int, int, float]:
        fit = c.tiers.get(language, len(TIERS)) if language else 0
        # Efraimidis–Spirakis: u^(1/w) sorts a weighted random permutation.
        return (fit, c.priority, -(rng.random() ** (1.0 / c.weight)))

    return sorted(candidates, key=key)
