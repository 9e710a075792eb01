"""Counters shared by every server process (rate limits, token budgets) and the record of each call."""

from __future__ import annotations

import calendar
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from sovstack.core import audit, request_id
from sovstack.core.base import utcnow
from sovstack.core.settings import Settings
from sovstack.gateway.facts import MICRO, SpendLimit
from sovstack.gateway.tables import Counter, SpendAlert, Transcript, Usage

_counters: Table = Counter.__table__  # type: ignore[assignment]
_INSERT_USAGE = insert(Usage)


_MINUTES: dict[datetime, str] = {}  # this minute's start -> its window name (strftime is the costly part)


def window(period: str, now: datetime) -> tuple[str, int]:
    """The fixed window containing ``now`` and the seconds until it resets."""
    if period == "minute":
        start = now.replace(second=0, microsecond=0)
        name = _MINUTES.get(start)
        if name is None:
            _MINUTES.clear()
            name = _MINUTES[start] = start.strftime("%Y-%m-%dT%H:%M")
        return name, int((start + timedelta(minutes=1) - now).total_seconds()) + 1
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), int((start + timedelta(days=1) - now).total_seconds()) + 1
    if period == "week":  # ISO weeks, from Monday
        start = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%G-W%V"), int((start + timedelta(days=7) - now).total_seconds()) + 1
    days = calendar.monthrange(now.year, now.month)[1]
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m"), int((start + timedelta(days=days) - now).total_seconds()) + 1


class Counters(Protocol):
    def add(self, session: Session, name: str, window: str, amount: int, ttl: int) -> int:
        """Add to a counter and return its new value."""

    def get(self, session: Session, name: str, window: str) -> int:
        """The counter's value (0 when absent)."""


class DatabaseCounters:
    """Counters in the deployment's database: an upsert per increment, atomic across processes."""

    def __init__(self) -> None:
        self._upserts: dict[str, Any] = {}  # built once per dialect: building one costs more than running it

    def _upsert(self, dialect: str) -> Any:
        stmt = self._upserts.get(dialect)
        if stmt is None:
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            base = insert(_counters).values(name=bindparam("n"), window=bindparam("w"), count=bindparam("a"))
            stmt = self._upserts[dialect] = base.on_conflict_do_update(
                index_elements=["name", "window"], set_={"count": _counters.c.count + base.excluded.count}
            ).returning(_counters.c.count)
        return stmt

    def add(self, session: Session, name: str, window: str, amount: int, ttl: int) -> int:
        conn = session.connection()
        value = conn.execute(self._upsert(conn.dialect.name), {"n": name, "w": window, "a": amount}).scalar_one()
        return int(value)

    def get(self, session: Session, name: str, window: str) -> int:
        value = session.connection().execute(_GET, {"n": name, "w": window}).scalar()
        return int(value or 0)


_GET = select(_counters.c.count).where(_counters.c.name == bindparam("n"), _counters.c.window == bindparam("w"))


@dataclass
class RedisCounters:
    """Counters in Redis (``SOVSTACK_REDIS_URL``): INCRBY with an expiry at the window's end."""

    client: Any

    def add(self, session: Session, name: str, window: str, amount: int, ttl: int) -> int:
        key = f"sovstack:{name}:{window}"
        pipe = self.client.pipeline()
        pipe.incrby(key, amount)
        pipe.expire(key, ttl + 60)
        value, _ = pipe.execute()
        return int(value)

    def get(self, session: Session, name: str, window: str) -> int:
        return int(self.client.get(f"sovstack:{name}:{window}") or 0)


def counters_for(settings: Settings) -> Counters:
    """The deployment's shared counters: Redis when ``SOVSTACK_REDIS_URL`` is set, else the database."""
    if settings.redis_url:
        import redis

        return RedisCounters(redis.Redis.from_url(settings.redis_url))
    return DatabaseCounters()


LEASE_SHARE = 50  # a process claims at most 1/50 of a per-minute limit at a time …
LEASE_MAX = 100  # … and never more than this many requests


class RateLeases:
    """Admission under a per-minute limit shared by every process, without a shared write per request.

    A process claims a block of requests from the shared counter (one atomic add) and admits from it
    locally until it is spent. The shared counter is the sum of claims, so the limit is never exceeded
    by all processes together; a block another process has claimed but not used may refuse a request
    early, by at most ``limit / LEASE_SHARE`` per other process. Limits under ``LEASE_SHARE`` claim one
    request at a time: exact, as if there were no leases.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, int]] = {}  # counter name -> (window, requests left in its claims)

    def admit(self, session: Session, counters: Counters, name: str, limit: int, now: datetime) -> int | None:
        """None when admitted under the counter ``name`` (a key's, or a person's); else the seconds until the
        window resets."""
        win, reset = window("minute", now)
        with self._lock:
            held = self._held.get(name)
            if held is not None and held[0] == win and held[1] > 0:
                self._held[name] = (win, held[1] - 1)
                return None
        block = max(1, min(limit // LEASE_SHARE, LEASE_MAX))
        claimed = counters.add(session, name, win, block, reset)
        session.commit()  # every attempt counts, whatever happens to the request next
        granted = block - max(0, claimed - limit)  # the part of this claim inside the limit
        if granted <= 0:
            return reset
        with self._lock:
            held = self._held.get(name)
            left = held[1] if held is not None and held[0] == win else 0
            self._held[name] = (win, left + granted - 1)
        return None


@dataclass
class Call:
    """What happened on one gateway call; becomes a usage row and an audit event."""

    actor: str
    key_prefix: str
    organisation_id: int | None
    model: str
    endpoint: str
    classification: str
    language: str = ""
    tried: list[str] = field(default_factory=list)
    answered: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    currency: str = ""  # of ``cost``: the answering deployment's
    latency_ms: float = 0.0
    outcome: str = "ok"
    reasons: list[str] = field(default_factory=list)
    person_id: int | None = None
    person_period: str | None = None  # the period of the person's share of the organisation's tokens, if any
    keep_days: int = 0  # > 0: the organisation opted in to keeping prompts and completions this long
    spend: tuple[SpendLimit, ...] = ()  # the budgets its tokens or cost are charged to
    tpm_key: str = ""  # the key whose tokens-per-minute it counts towards, if that key has such a limit
    prompt: str = ""
    completion: list[str] = field(default_factory=list)
    estimated: bool = False  # no usage came from the upstream: tokens were estimated from the text relayed
    fallback: str = ""  # the model that answered, when it is a declared fallback of the one asked for
    response_id: str = ""  # a Responses API call's resp_… id: what a kept response and its deletion name
    relayed_ascii: int = 0  # characters of completion text relayed so far, for an estimate when usage never comes
    relayed_other: int = 0
    # Taken where the call is made: its usage and audit are written later by the meter writer's own task.
    request_id: str = field(default_factory=request_id.current)

    def detail(self) -> dict[str, Any]:
        return {"key": self.key_prefix, "organisation_id": self.organisation_id, "model": self.model,
                "endpoint": self.endpoint, "classification": self.classification, "language": self.language,
                "tried": self.tried, "answered": self.answered, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost": round(self.cost, 8), "currency": self.currency,
                "latency_ms": round(self.latency_ms, 2),
                "transcript_kept": self.keep_days > 0, "estimated": self.estimated, "fallback": self.fallback,
                "request_id": self.request_id, **({"response_id": self.response_id} if self.response_id else {})}


def count_text(call: Call, text: str) -> None:
    """Count completion text relayed to the client, for ``estimate_tokens`` if the upstream never says."""
    ascii_chars, other = split_text(text)
    call.relayed_ascii += ascii_chars
    call.relayed_other += other


def split_text(text: str) -> tuple[int, int]:
    """Its ASCII characters and its others, the two ``estimate_tokens`` counts differently."""
    other = 0 if text.isascii() else sum(1 for ch in text if ord(ch) > 127)
    return len(text) - other, other


def estimate_tokens(ascii_chars: int, other_chars: int) -> int:
    """Tokens for text never counted by a tokenizer: a conservative estimate, not a tokenizer's count.

    English averages about four characters per token in the BPE tokenizers models use; scripts outside
    ASCII (Devanagari, Tamil, CJK …) take one token per character or more in most of them, so each such
    character counts as one. Over-counting is the safe side for a budget.
    """
    return -(-ascii_chars // 4) + other_chars


def text_of(body: dict[str, Any]) -> str:
    """The text a request sends to the model (chat messages, an input, a prompt, a query and its documents),
    for a prompt-token estimate."""
    parts = [_text(body.get(name)) for name in ("messages", "input", "prompt", "query", "documents")]
    return "\n".join(p for p in parts if p)


def _text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    parts: list[str] = []
    for item in messages if isinstance(messages, list) else []:
        content = item.get("content") if isinstance(item, dict) else item
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


def person_counter(kind: str, organisation_id: int, person_id: int) -> str:
    """The shared counter of one person's calls for one organisation, across all their keys: ``rpm`` or
    ``tokens``."""
    return f"{kind}:{organisation_id}:person:{person_id}"


def record(session: Session, counters: Counters, call: Call, budget_period: str | None) -> None:
    """Store the call's usage, add its tokens to the organisation's budget, and audit it: one transaction."""
    stage(session, counters, call, budget_period)
    session.commit()


def stage(session: Session, counters: Counters, call: Call, budget_period: str | None) -> None:
    """Write one call's usage, budget tokens, transcript and audit event into the session's transaction."""
    stage_many(session, counters, [(call, budget_period)])


def stage_many(session: Session, counters: Counters, calls: list[tuple[Call, str | None]]) -> None:
    """Write several calls' usage in one transaction: the usage rows in one statement, each
    organisation's and each person's tokens in one counter update, then each call's transcript and audit event."""
    now = utcnow()
    session.connection().execute(_INSERT_USAGE, [{
        "at": now, "key_prefix": call.key_prefix, "organisation_id": call.organisation_id, "model": call.model,
        "deployment": call.answered, "endpoint": call.endpoint, "classification": call.classification,
        "language": call.language, "tokens_in": call.tokens_in, "tokens_out": call.tokens_out, "cost": call.cost,
        "currency": call.currency, "latency_ms": call.latency_ms,
        "tries": len(call.tried), "outcome": call.outcome, "estimated": call.estimated} for call, _ in calls])
    spent: dict[tuple[str, str], int] = {}  # (counter, period) -> tokens
    for call, period in calls:
        tokens = call.tokens_in + call.tokens_out
        if call.organisation_id is None or not tokens:
            continue
        charged = [(f"tokens:{call.organisation_id}", period)]
        if call.person_id is not None:
            charged.append((person_counter("tokens", call.organisation_id, call.person_id), call.person_period))
        for name, per in charged:
            if per:
                spent[(name, per)] = spent.get((name, per), 0) + tokens
    for (name, period), tokens in spent.items():
        win, ttl = window(period, now)
        counters.add(session, name, win, tokens, ttl)
    _charge_spend(session, counters, [call for call, _ in calls], now)
    for call, _ in calls:
        if call.keep_days and call.organisation_id is not None:
            _keep_transcript(session, call)
    audit.record_many(session, [
        audit.Event(actor=call.actor, action=f"gateway.{call.endpoint}", target=f"model:{call.model}",
                    outcome=_AUDIT_OUTCOME.get(call.outcome, "failed"), reasons=call.reasons,
                    detail=call.detail()) for call, _ in calls])


# A refused call is audited as refused, whatever refused it; anything else that went wrong as failed.
REFUSALS = ("refused", "not_allowed", "rate_limited", "over_budget", "over_concurrency")
_AUDIT_OUTCOME = {"ok": "ok", "cached": "ok", **dict.fromkeys(REFUSALS, "refused")}


def _charge(call: Call, budget: SpendLimit) -> int:
    if budget.unit == "tokens":
        return call.tokens_in + call.tokens_out
    return round(call.cost * MICRO) if call.currency == budget.unit else 0


def _charge_spend(session: Session, counters: Counters, calls: list[Call], now: datetime) -> None:
    """Add the calls' tokens and cost to their budgets and tokens-per-minute counters; record each alert
    threshold a budget crossed (the counter's atomic add decides which call crossed it, so once per period)."""
    charged: dict[str, tuple[SpendLimit, int]] = {}
    tpm: dict[str, int] = {}
    for call in calls:
        for budget in call.spend:
            units = _charge(call, budget)
            if units:
                charged[budget.counter] = (budget, charged.get(budget.counter, (budget, 0))[1] + units)
        if call.tpm_key and call.tokens_in + call.tokens_out:
            tpm[call.tpm_key] = tpm.get(call.tpm_key, 0) + call.tokens_in + call.tokens_out
    for key, tokens in tpm.items():
        win, ttl = window("minute", now)
        counters.add(session, f"tpm:{key}", win, tokens, ttl)
    for budget, units in charged.values():
        win, ttl = window(budget.period, now)
        total = counters.add(session, budget.counter, win, units, ttl)
        for threshold in budget.alerts:
            line = budget.limit * threshold / 100
            if total - units < line <= total:
                _alert(session, budget, win, threshold, total, now)


def _alert(session: Session, budget: SpendLimit, win: str, threshold: int, total: int, now: datetime) -> None:
    scale = 1 if budget.unit == "tokens" else MICRO
    spent, amount = total / scale, budget.limit / scale
    session.add(SpendAlert(at=now, budget_id=budget.id, scope=budget.scope, subject=budget.subject,
                           unit=budget.unit, window=win, threshold=threshold, spent=spent, amount=amount))
    audit.record(session, actor="gateway", action="gateway.budget_alert", target=f"{budget.scope}:{budget.subject}",
                 reasons=[f"{threshold}% of the {budget.scope} budget of {amount:g} {budget.unit} per "
                          f"{budget.period} reached ({spent:g} {budget.unit} spent in {win})"],
                 detail={"budget_id": budget.id, "threshold": threshold, "spent": spent, "amount": amount,
                         "unit": budget.unit, "period": budget.period, "window": win})


def _keep_transcript(session: Session, call: Call) -> None:
    now = utcnow()
    session.execute(delete(Transcript).where(Transcript.expires_at < now))  # retention is enforced as we go
    session.add(Transcript(at=now, expires_at=now + timedelta(days=call.keep_days),
                           organisation_id=call.organisation_id, key_prefix=call.key_prefix, model=call.model,
                           deployment=call.answered, request=call.prompt, response="".join(call.completion)))
