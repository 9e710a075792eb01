"""Which deployments may serve a request, in which order: policy, cut-offs, circuits, priority, weight."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sovstack.core import policy
from sovstack.core.context import Principal

if TYPE_CHECKING:
    from sovstack.gateway.facts import DeploymentFacts

FAILURES_TO_OPEN = 3
TIERS = {"high": 0, "medium": 1, "low": 2}
COOL_DOWN_SECONDS = 30.0
# Told of each transition (opened, probing, closed) with the deployment's id; it must not block (circuits.py).
Observer = Callable[[int, "Breaker"], None]


@dataclass
class Breaker:
    """Per-deployment circuit and load: opens after repeated failures, lets one probe through after a cool-down.

    A probe that never reports (its client hung up, its task was cancelled) is ``released``; one that is
    still out after a whole cool-down is presumed lost and another may go, so a circuit cannot stay
    half-open for good. ``in_flight`` and ``latency_ms`` (an exponentially weighted mean of the time to the
    upstream's answer) serve the least-busy and latency strategies.
    """

    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    probe_started: float = 0.0
    threshold: int = FAILURES_TO_OPEN
    cool_down: float = COOL_DOWN_SECONDS
    in_flight: int = 0
    latency_ms: float | None = None
    deployment_id: int = 0
    observer: Observer | None = field(default=None, repr=False, compare=False)

    def _tell(self) -> None:
        if self.observer is not None:
            self.observer(self.deployment_id, self)

    def state(self, now: float | None = None) -> str:
        if self.opened_at is None:
            return "closed"
        now = time.monotonic() if now is None else now
        return "half-open" if now - self.opened_at >= self.cool_down else "open"

    def allows(self) -> bool:
        if self.opened_at is None:
            return True
        now = time.monotonic()
        if self.state(now) != "half-open":
            return False
        if self.probing and now - self.probe_started < self.cool_down:
            return False
        self.probing, self.probe_started = True, now
        self._tell()
        return True

    def succeeded(self) -> None:
        was_open = self.opened_at is not None
        self.failures, self.opened_at, self.probing = 0, None, False
        if was_open:
            self._tell()

    def failed(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at = time.monotonic()  # a failed probe re-opens at once, for another cool-down
            self.probing = False
            self._tell()
        self.probing = False

    def released(self) -> None:
        """The call ended without saying anything about the deployment (the client went away): no verdict."""
        if self.probing:
            self.probing = False
            self._tell()

    def observe(self, ms: float) -> None:
        self.latency_ms = ms if self.latency_ms is None else 0.8 * self.latency_ms + 0.2 * ms


@dataclass
class Breakers:
    """The circuits of one server process (each replica learns for itself)."""

    by_deployment: dict[int, Breaker] = field(default_factory=dict)
    observer: Observer | None = None

    def of(self, deployment_id: int, threshold: int = FAILURES_TO_OPEN,
           cool_down: float = COOL_DOWN_SECONDS) -> Breaker:
        breaker = self.by_deployment.get(deployment_id)
        if breaker is None:
            breaker = self.by_deployment[deployment_id] = Breaker(deployment_id=deployment_id, observer=self.observer)
        breaker.threshold, breaker.cool_down = threshold, cool_down  # the catalogue's settings may have changed
        return breaker

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
    model: str = ""  # the logical model it serves (a fallback model's deployments follow the asked one's)
    retries: int = 0  # tries on the same deployment after a transient failure, before failing over
    failures_to_open: int = FAILURES_TO_OPEN
    cool_down_seconds: float = COOL_DOWN_SECONDS
    backend: str = "openai"  # how it is called: gateway/backends.py


@dataclass
class Plan:
    allowed: list[Candidate]
    refused: dict[str, list[str]]


def plan(doc: policy.PolicyDocument, who: Principal | None, classification: str,
         deployments: Sequence[DeploymentFacts], model: str = "") -> Plan:
    """Split deployments into those the policy allows for this classification and those it refuses (why)."""
    allowed, refused = [], {}
    for dep in deployments:
        if dep.withdrawn:
            refused[dep.name] = [f"withdrawn: {dep.withdrawn_reason or 'cut off'}"]
            continue
        if not dep.enabled:
            refused[dep.name] = ["disabled by an admin"]
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
                   "developer": dep.developer.name, "currency": dep.currency},
            model=model, retries=dep.retries, failures_to_open=dep.failures_to_open,
            cool_down_seconds=dep.cool_down_seconds, backend=dep.backend))
    return Plan(allowed, refused)


_RNG = random.Random()  # seeded once: a new Random per request reads the OS entropy source each time


STRATEGIES = ("priority", "least-busy", "latency")


def order(candidates: list[Candidate], language: str | None = None, rng: random.Random | None = None,
          strategy: str = "priority", health: Breakers | None = None) -> list[Candidate]:
    """Deployments best at the language first (by quality tier); then by priority; within a priority by the
    model's strategy: weighted random (``priority``), fewest calls in flight in this process (``least-busy``,
    ties weighted random), or lowest recent latency (``latency``; a deployment not yet measured goes first,
    so it gets measured)."""
    if len(candidates) < 2:
        return list(candidates)
    rng = rng or _RNG
    found = health.by_deployment if health is not None else {}

    def load(c: Candidate) -> float:
        breaker = found.get(c.id)
        if strategy == "least-busy":
            return breaker.in_flight if breaker else 0
        if strategy == "latency":
            return breaker.latency_ms or 0.0 if breaker else 0.0
        return 0

    def key(c: Candidate) -> tuple[int, int, float, float]:
        fit = c.tiers.get(language, len(TIERS)) if language else 0
        # Efraimidis–Spirakis: u^(1/w) sorts a weighted random permutation.
        return (fit, c.priority, load(c), -(rng.random() ** (1.0 / c.weight)))

    return sorted(candidates, key=key)
