"""The append-only, hash-chained audit log.

Each event's hash covers its own fields and the previous event's hash, so altering, deleting,
inserting or reordering any event breaks the chain at that point. Appenders first update the
single ``audit_head`` row: that takes the write lock (SQLite) or the row lock (PostgreSQL), so
concurrent writers in any number of processes queue up and never fork the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Select, Table, insert, select, text, update
from sqlalchemy.orm import Session

from sovstack.core.tables import AuditEvent, AuditHead

GENESIS = "0" * 64
OUTCOMES = ("ok", "refused", "failed")

_events: Table = AuditEvent.__table__  # type: ignore[assignment]
_head: Table = AuditHead.__table__  # type: ignore[assignment]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def digest(prev: str, seq: int, at: str, actor: str, action: str, target: str,
           outcome: str, reasons: str, detail: str) -> str:
    """The hash of one event: its fields and its predecessor's hash, unambiguously encoded."""
    payload = orjson.dumps([prev, seq, at, actor, action, target, outcome, reasons, detail])
    return hashlib.sha256(payload).hexdigest()


def record(session: Session, *, actor: str, action: str, target: str = "", outcome: str = "ok",
           reasons: Sequence[str] = (), detail: dict[str, Any] | None = None) -> int:
    """Append one event in the session's transaction and return its sequence number."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    session.flush()
    seq, prev = session.execute(
        update(_head).where(_head.c.id == 1).values(last_seq=_head.c.last_seq + 1)
        .returning(_head.c.last_seq, _head.c.last_hash)
    ).one()
    at = _now()
    reasons_json = _json(list(reasons))
    detail_json = _json(detail or {})
    h = digest(prev, seq, at, actor, action, target, outcome, reasons_json, detail_json)
    session.execute(insert(_events).values(
        seq=seq, at=at, actor=actor, action=action, target=target, outcome=outcome,
        reasons=reasons_json, detail=detail_json, prev_hash=prev, hash=h,
    ))
    session.execute(update(_head).where(_head.c.id == 1).values(last_hash=h))
    return int(seq)


@dataclass(frozen=True)
class Verification:
    """The outcome of checking the whole chain."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


def verify(session: Session, batch: int = 5000) -> Verification:
    """Recompute the chain from the first event; name the first event that does not hold."""
    conn = session.connection()
    head = conn.execute(select(_head.c.last_seq, _head.c.last_hash).where(_head.c.id == 1)).one()
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(text(
        "SELECT seq, at, actor, action, target, outcome, reasons, detail, prev_hash, hash "
        "FROM audit_events ORDER BY seq"
    ))
    prev, expected, checked = GENESIS, 1, 0
    sha, dumps = hashlib.sha256, orjson.dumps
    for seq, at, actor, action, target, outcome, reasons, detail, prev_hash, h in result:
        if seq != expected:
            return Verification(False, checked, expected, f"event {expected} is missing (deleted)")
        if prev_hash != prev:
            return Verification(False, checked, seq,
                                f"event {seq} does not follow event {seq - 1} (inserted or reordered)")
        payload = dumps([prev, seq, at, actor, action, target, outcome, reasons, detail])
        if sha(payload).hexdigest() != h:
            return Verification(False, checked, seq, f"event {seq} was altered")
        prev, expected, checked = h, seq + 1, checked + 1
    if head.last_seq != checked or head.last_hash != prev:
        return Verification(False, checked, checked + 1,
                            f"events after {checked} were removed (the head records {head.last_seq})")
    return Verification(True, checked)


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(f: AuditFilter) -> Select[AuditEvent]:
    q = select(AuditEvent)
    if f.actor:
        q = q.where(AuditEvent.actor == f.actor)
    if f.action:
        # A trailing dot-star filters a family: "identity.*" matches "identity.user.create".
        if f.action.endswith("*"):
            q = q.where(AuditEvent.action.startswith(f.action[:-1]))
        else:
            q = q.where(AuditEvent.action == f.action)
    if f.target:
        q = q.where(AuditEvent.target.contains(f.target))
    if f.outcome:
        q = q.where(AuditEvent.outcome == f.outcome)
    if f.since:
        q = q.where(AuditEvent.at >= f.since.strftime("%Y-%m-%dT%H:%M:%S"))
    if f.until:
        q = q.where(AuditEvent.at < f.until.strftime("%Y-%m-%dT%H:%M:%S"))
    return q


def search(session: Session, f: AuditFilter, *, limit: int = 100, before: int | None = None) -> list[AuditEvent]:
    """Newest first, at most ``limit``, optionally only events older than ``before``."""
    q = _filtered(f)
    if before:
        q = q.where(AuditEvent.seq < before)
    return list(session.scalars(q.order_by(AuditEvent.seq.desc()).limit(limit)))


def as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq, "at": event.at, "actor": event.actor, "action": event.action,
        "target": event.target, "outcome": event.outcome, "reasons": orjson.loads(event.reasons),
        "detail": orjson.loads(event.detail), "prev_hash": event.prev_hash, "hash": event.hash,
    }


def export_lines(session: Session, f: AuditFilter) -> Iterator[str]:
    """Matching events oldest first, one JSON object per line (JSON Lines)."""
    q = _filtered(f).order_by(AuditEvent.seq).execution_options(yield_per=2000)
    for event in session.scalars(q):
        yield orjson.dumps(as_dict(event)).decode() + "\n"


def ensure_head(session: Session) -> None:
    """Create the head row if the chain has none (migrations do this; tests that truncate too)."""
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, last_seq=0, last_hash=GENESIS))
        session.flush()
