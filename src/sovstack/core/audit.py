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
from sqlalchemy import Connection, Select, Table, event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from sovstack.core import request_id
from sovstack.core.base import naive_utc
from sovstack.core.tables import AuditEvent, AuditHead

GENESIS = "0" * 64
OUTCOMES = ("ok", "refused", "failed")

_events: Table = AuditEvent.__table__  # type: ignore[assignment]
_head: Table = AuditHead.__table__  # type: ignore[assignment]

# The append path talks to the driver directly: SQLAlchemy's per-statement machinery cost more than
# the SQL itself (bench/core.py). It runs on the session's own connection, inside its transaction.
_COLUMNS = "seq, at, actor, action, target, outcome, reasons, detail, prev_hash, hash"
_LOCK_HEAD = "UPDATE audit_head SET last_seq = last_seq WHERE id = 1 RETURNING last_seq, last_hash"
_INSERT = "INSERT INTO audit_events (" + _COLUMNS + ") VALUES ({marks})"
_WRITE_HEAD = "UPDATE audit_head SET last_seq = {m}, last_hash = {m} WHERE id = 1"
_TIP_AFTER = "SELECT seq, hash FROM audit_events WHERE seq > {m} ORDER BY seq DESC LIMIT 1"
_TIP = "sovstack.audit.tip"
NO_APPEND = "sovstack.audit.no_append"  # set in a session's info when it cannot hold the chain's lock


class _Cursor:
    """The driver's cursor on the session's connection; its errors come out as SQLAlchemy's (``OperationalError``
    for a lock not granted in time), as from any other statement, so the app's handlers answer them."""

    def __init__(self, conn: Connection) -> None:
        self.dialect = conn.dialect
        self.cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._run(self.cursor.execute, statement, params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self._run(self.cursor.executemany, statement, rows)

    def _run(self, method: Any, statement: str, params: Any) -> None:
        dbapi_error = self.dialect.loaded_dbapi.Error
        try:
            method(statement, params)
        except dbapi_error as exc:
            raise DBAPIError.instance(statement, params, exc, dbapi_error, dialect=self.dialect) from exc

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def close(self) -> None:
        self.cursor.close()


@dataclass
class _Tip:
    """The chain's end as this transaction sees it; the head row is written once, at commit."""

    cursor: _Cursor
    mark: str
    base_seq: int
    base_hash: str
    seq: int
    hash: str
    stale: bool = False


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _detail(detail: dict[str, Any] | None) -> str:
    """The detail as stored: with the id of the request being served, so an event leads to its log lines."""
    rid = request_id.current()
    if rid and (detail is None or "request_id" not in detail):
        detail = {**(detail or {}), "request_id": rid}
    return _json(detail or {})


def digest(prev: str, seq: int, at: str, actor: str, action: str, target: str,
           outcome: str, reasons: str, detail: str) -> str:
    """The hash of one event: its fields and its predecessor's hash, unambiguously encoded."""
    payload = orjson.dumps([prev, seq, at, actor, action, target, outcome, reasons, detail])
    return hashlib.sha256(payload).hexdigest()


def _tip(session: Session) -> _Tip:
    tip: _Tip | None = session.info.get(_TIP)
    if tip is not None and session.in_nested_transaction():
        session.connection()  # SQLAlchemy emits a pending SAVEPOINT only when its connection is asked for
    if tip is None:
        if session.info.get(NO_APPEND):
            raise RuntimeError("this session commits each statement on its own: it cannot append to the audit log")
        # The first event of a transaction locks the head row (SQLite: the write lock; PostgreSQL:
        # the row lock) until commit, so appenders in any process queue here and never fork.
        conn = session.connection()
        cursor = _Cursor(conn)
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cursor.execute(_LOCK_HEAD)
        row = cursor.fetchone()
        if row is None:
            raise RuntimeError("the audit_head row is missing: the database was not migrated")
        seq, prev = row
        tip = session.info[_TIP] = _Tip(cursor, mark, seq, prev, seq, prev)
    elif tip.stale:
        # A savepoint was rolled back: find the end of what survived.
        tip.cursor.execute(_TIP_AFTER.format(m=tip.mark), (tip.base_seq,))
        row = tip.cursor.fetchone()
        tip.seq, tip.hash = (row[0], row[1]) if row else (tip.base_seq, tip.base_hash)
        tip.stale = False
    return tip


def record(session: Session, *, actor: str, action: str, target: str = "", outcome: str = "ok",
           reasons: Sequence[str] = (), detail: dict[str, Any] | None = None) -> int:
    """Append one event in the session's transaction and return its sequence number."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}")
    tip = _tip(session)
    seq, at = tip.seq + 1, _now()
    reasons_json, detail_json = _json(list(reasons)), _detail(detail)
    h = digest(tip.hash, seq, at, actor, action, target, outcome, reasons_json, detail_json)
    tip.cursor.execute(_INSERT.format(marks=", ".join([tip.mark] * 10)),
                       (seq, at, actor, action, target, outcome, reasons_json, detail_json, tip.hash, h))
    tip.seq, tip.hash = seq, h
    return seq


@dataclass(frozen=True)
class Event:
    """One event for ``record_many``."""

    actor: str
    action: str
    target: str = ""
    outcome: str = "ok"
    reasons: Sequence[str] = ()
    detail: dict[str, Any] | None = None


def record_many(session: Session, events: Sequence[Event]) -> list[int]:
    """Append several events in order in one statement (one round trip); their sequence numbers."""
    if not events:
        return []
    tip = _tip(session)
    seq, prev, rows = tip.seq, tip.hash, []
    for e in events:
        if e.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")
        seq, at = seq + 1, _now()
        reasons_json, detail_json = _json(list(e.reasons)), _detail(e.detail)
        h = digest(prev, seq, at, e.actor, e.action, e.target, e.outcome, reasons_json, detail_json)
        rows.append((seq, at, e.actor, e.action, e.target, e.outcome, reasons_json, detail_json, prev, h))
        prev = h
    tip.cursor.executemany(_INSERT.format(marks=", ".join([tip.mark] * 10)), rows)
    first = tip.seq + 1
    tip.seq, tip.hash = seq, prev  # only once the rows are in
    return list(range(first, seq + 1))


def _write_head(session: Session) -> None:
    tip: _Tip | None = session.info.pop(_TIP, None)
    if tip is None:
        return
    if tip.seq != tip.base_seq:
        tip.cursor.execute(_WRITE_HEAD.format(m=tip.mark), (tip.seq, tip.hash))
    tip.cursor.close()


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    tip: _Tip | None = session.info.get(_TIP)
    if tip is not None and previous.nested:
        tip.stale = True


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended (rollback or close): the lock is gone, so is the tip. Its
    # cursor is left to the garbage collector: the pool may already have closed the connection.
    if transaction.parent is None:
        session.info.pop(_TIP, None)


def attach(sessions: sessionmaker[Session]) -> None:
    """Keep the chain head in step with each session's transactions (done by ``Database``)."""
    event.listen(sessions, "before_commit", _write_head)
    event.listen(sessions, "after_soft_rollback", _after_soft_rollback)
    event.listen(sessions, "after_transaction_end", _after_transaction_end)


@dataclass(frozen=True)
class Verification:
    """The outcome of checking the whole chain."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


_SELECT_CHAIN = ("SELECT seq, at, actor, action, target, outcome, reasons, detail, prev_hash, hash "
                 "FROM audit_events ORDER BY seq")


def _chain_rows(session: Session, batch: int) -> Iterator[tuple[Any, ...]]:
    """Every event, oldest first, fetched in batches straight from the driver (the hot path of verify)."""
    conn = session.connection()
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    # PostgreSQL: a server-side cursor, so a long chain is never held in memory whole.
    cursor = dbapi.cursor(name="sovstack_audit_verify") if conn.dialect.name == "postgresql" else dbapi.cursor()
    try:
        cursor.execute(_SELECT_CHAIN)
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        cursor.close()


def verify(session: Session, batch: int = 5000) -> Verification:
    """Recompute the chain from the first event; name the first event that does not hold."""
    head = session.execute(select(_head.c.last_seq, _head.c.last_hash).where(_head.c.id == 1)).one()
    prev, expected, checked = GENESIS, 1, 0
    sha, dumps = hashlib.sha256, orjson.dumps
    for seq, at, actor, action, target, outcome, reasons, detail, prev_hash, h in _chain_rows(session, batch):
        if seq != expected:
            return Verification(False, checked, expected, f"event {expected} is missing (deleted)")
        if prev_hash != prev:
            return Verification(False, checked, seq,
                                f"event {seq} does not follow event {seq - 1} (inserted or reordered)")
        if sha(dumps([prev, seq, at, actor, action, target, outcome, reasons, detail])).hexdigest() != h:
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
    if f.since:  # times with an offset are compared in UTC, as the chain records them
        q = q.where(AuditEvent.at >= naive_utc(f.since).strftime("%Y-%m-%dT%H:%M:%S"))
    if f.until:
        q = q.where(AuditEvent.at < naive_utc(f.until).strftime("%Y-%m-%dT%H:%M:%S"))
    return q


def search(session: Session, f: AuditFilter, *, limit: int = 100, before: int | None = None) -> list[AuditEvent]:
    """Newest first, at most ``limit``, optionally only events older than ``before``."""
    q = _filtered(f)
    if before:
        q = q.where(AuditEvent.seq < before)
    return list(session.scalars(q.order_by(AuditEvent.seq.desc()).limit(limit)))


def as_dict(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq, "at": row.at, "actor": row.actor, "action": row.action,
        "target": row.target, "outcome": row.outcome, "reasons": orjson.loads(row.reasons),
        "detail": orjson.loads(row.detail), "prev_hash": row.prev_hash, "hash": row.hash,
    }


def export_lines(session: Session, f: AuditFilter) -> Iterator[str]:
    """Matching events oldest first, one JSON object per line (JSON Lines)."""
    q = _filtered(f).order_by(AuditEvent.seq).execution_options(yield_per=2000)
    for row in session.scalars(q):
        yield orjson.dumps(as_dict(row)).decode() + "\n"


def length(session: Session) -> int:
    """How many events the chain holds, as its head records."""
    return int(session.execute(select(_head.c.last_seq).where(_head.c.id == 1)).scalar_one())


def ensure_head(session: Session) -> None:
    """Create the head row if the chain has none (migrations do this; tests that truncate too)."""
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, last_seq=0, last_hash=GENESIS))
        session.flush()
