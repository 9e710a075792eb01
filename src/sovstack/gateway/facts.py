"""What routing needs to know, read once per change instead of once per request.

A snapshot holds the catalogue (models, deployments with their parties and decrypted upstream keys),
key and organisation policies, budgets, transcript and stored-response opt-ins and the parsed policy.
Every request asks the database one cheap question — the gateway's generation counter and the newest
policy version — and reloads only when either moved, so a cut-off in any process moves traffic in every
process on its next request. Changes to parties (core) do not bump the generation; the snapshot also
expires after ``MAX_AGE``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, selectinload

from sovstack.core import policy
from sovstack.gateway.routing import Plan
from sovstack.gateway.tables import (
    Deployment,
    GatewayModel,
    Generation,
    KeyPolicy,
    OrgBudget,
    OrgCache,
    OrgLogging,
    OrgPolicy,
    OrgResponses,
    SpendBudget,
)

MAX_AGE = 5.0
MICRO = 1_000_000  # money counters count millionths of a currency unit
_STAMP = text("SELECT (SELECT value FROM gateway_generation WHERE id = 1), (SELECT max(id) FROM policy_versions)")


def bump(session: Session) -> None:
    """Tell every process that the catalogue changed (call in the changing transaction)."""
    result = session.execute(update(Generation).where(Generation.id == 1).values(value=Generation.value + 1))
    if result.rowcount == 0:  # type: ignore[attr-defined]  # the row was lost (a restore, a truncate): recreate it
        session.add(Generation(id=1, value=1))
        session.flush()


@dataclass(frozen=True)
class PartyFacts:
    name: str
    jurisdiction: str
    parent_jurisdiction: str


@dataclass(frozen=True)
class DeploymentFacts:
    id: int
    name: str
    base_url: str
    upstream_model: str
    api_key: str
    hosting_jurisdiction: str
    operator: PartyFacts
    developer: PartyFacts
    licence: str
    open_weights: bool
    languages: list[dict[str, Any]]
    price_in: float
    price_out: float
    currency: str
    priority: int
    weight: int
    timeout_seconds: float
    withdrawn: bool
    withdrawn_reason: str
    retries: int = 0
    failures_to_open: int = 3
    cool_down_seconds: float = 30.0
    enabled: bool = True
    backend: str = "openai"


@dataclass(frozen=True)
class ModelFacts:
    id: int
    name: str
    language_routing: bool
    deployments: tuple[DeploymentFacts, ...]
    routing: str = "priority"
    fallbacks: tuple[str, ...] = ()
    enabled: bool = True


@dataclass(frozen=True)
class KeyFacts:
    default_classification: str
    floor_classification: str
    requests_per_minute: int | None
    models: frozenset[str] | None = None  # None: every model
    tokens_per_minute: int | None = None
    max_concurrency: int | None = None


@dataclass(frozen=True)
class SpendLimit:
    """A budget of a key, a person or an organisation: tokens, or money in one currency, per period."""

    id: int
    scope: str  # key | person | organisation
    subject: str  # the key's prefix, the person's user id, the organisation's id
    unit: str  # "tokens" or an ISO 4217 currency code
    amount: float
    period: str
    alerts: tuple[int, ...] = ()

    @property
    def counter(self) -> str:
        return f"spend:{self.scope}:{self.subject}:{self.unit}"

    @property
    def limit(self) -> int:
        """The amount in counter units: tokens, or millionths of the currency (counters are integers)."""
        return int(self.amount) if self.unit == "tokens" else round(self.amount * MICRO)


@dataclass(frozen=True)
class OrgFacts:
    floor_classification: str
    requests_per_minute_per_person: int | None
    tokens_per_person: int | None
    tokens_period: str


@dataclass
class Snapshot:
    stamp: tuple[Any, ...]
    loaded: float
    policy: policy.PolicyDocument
    models: dict[str, ModelFacts]
    keys: dict[str, KeyFacts]
    orgs: dict[int, OrgFacts]
    budgets: dict[int, tuple[int, str]]
    keep_days: dict[int, int]
    cache_ttl: dict[int, int] = field(default_factory=dict)  # organisation → seconds answers are kept
    response_days: dict[int, int] = field(default_factory=dict)  # organisation → days responses are kept
    spend: dict[tuple[str, str], tuple[SpendLimit, ...]] = field(default_factory=dict)
    plans: dict[tuple[str, str], Plan] = field(default_factory=dict)


def _party(p: Any) -> PartyFacts:
    return PartyFacts(p.name, p.jurisdiction, p.parent_jurisdiction)


def _deployment(d: Deployment, unseal: Callable[[str], str]) -> DeploymentFacts:
    return DeploymentFacts(
        id=d.id, name=d.name, base_url=d.base_url.rstrip("/"), upstream_model=d.upstream_model,
        api_key=unseal(d.api_key_encrypted), hosting_jurisdiction=d.hosting_jurisdiction, operator=_party(d.operator),
        developer=_party(d.developer), licence=d.licence, open_weights=d.open_weights, languages=list(d.languages),
        price_in=d.price_in, price_out=d.price_out, currency=d.currency, priority=d.priority, weight=d.weight,
        timeout_seconds=d.timeout_seconds, withdrawn=d.withdrawn, withdrawn_reason=d.withdrawn_reason,
        retries=d.retries, failures_to_open=d.failures_to_open, cool_down_seconds=d.cool_down_seconds,
        enabled=d.enabled, backend=d.backend or "openai")


def load(session: Session, stamp: tuple[Any, ...], home: str, unseal: Callable[[str], str]) -> Snapshot:
    models = session.scalars(select(GatewayModel).options(selectinload(GatewayModel.deployments)))
    return Snapshot(
        stamp=stamp, loaded=time.monotonic(), policy=policy.current(session, home),
        models={m.name: ModelFacts(m.id, m.name, m.language_routing,
                                   tuple(_deployment(d, unseal) for d in m.deployments), routing=m.routing,
                                   fallbacks=tuple(m.fallbacks or ()), enabled=m.enabled) for m in models},
        keys={k.key_prefix: _key(k) for k in session.scalars(select(KeyPolicy))},
        orgs={o.organisation_id: OrgFacts(o.floor_classification, o.requests_per_minute_per_person,
                                          o.tokens_per_person, o.tokens_period)
              for o in session.scalars(select(OrgPolicy))},
        budgets={b.organisation_id: (b.tokens, b.period) for b in session.scalars(select(OrgBudget))},
        keep_days={o.organisation_id: o.retention_days for o in session.scalars(select(OrgLogging))
                   if o.enabled},
        cache_ttl={c.organisation_id: c.ttl_seconds for c in session.scalars(select(OrgCache))},
        response_days={r.organisation_id: r.retention_days for r in session.scalars(select(OrgResponses))},
        spend=_spend(session))


def _key(k: KeyPolicy) -> KeyFacts:
    return KeyFacts(k.default_classification, k.floor_classification, k.requests_per_minute,
                    frozenset(k.models) if k.models is not None else None, k.tokens_per_minute, k.max_concurrency)


def _spend(session: Session) -> dict[tuple[str, str], tuple[SpendLimit, ...]]:
    found: dict[tuple[str, str], list[SpendLimit]] = {}
    for b in session.scalars(select(SpendBudget).order_by(SpendBudget.id)):
        found.setdefault((b.scope, b.subject), []).append(
            SpendLimit(b.id, b.scope, b.subject, b.unit, b.amount, b.period, tuple(sorted(b.alerts or ()))))
    return {k: tuple(v) for k, v in found.items()}


class Facts:
    """The current snapshot of one process, replaced whole when it is out of date."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def current(self, session: Session, home: str, unseal: Callable[[str], str]) -> Snapshot:
        stamp = tuple(session.connection().execute(_STAMP).one())
        snap = self._snapshot
        if snap is not None and snap.stamp == stamp and time.monotonic() - snap.loaded < MAX_AGE:
            return snap
        with self._lock:  # one thread reloads; the others wait for its result
            snap = self._snapshot
            if snap is None or snap.stamp != stamp or time.monotonic() - snap.loaded >= MAX_AGE:
                snap = self._snapshot = load(session, stamp, home, unseal)
        return snap
