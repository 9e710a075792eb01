"""The hash-chained audit log: appends, verification against every kind of tampering, concurrency."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update

from sovstack.core import audit, identity
from sovstack.core.context import Principal, unit_of_work
from sovstack.core.db import Database
from sovstack.core.errors import Conflict
from sovstack.core.schemas import UserCreate
from sovstack.core.settings import Settings
from sovstack.core.tables import AuditEvent, AuditHead, User


def append(db: Database, n: int, actor: str = "tester") -> None:
    with db.session() as s:
        for i in range(n):
            audit.record(s, actor=actor, action="test.event", target=f"thing:{i}", detail={"i": i})
        s.commit()


def verify(db: Database) -> audit.Verification:
    with db.session() as s:
        return audit.verify(s)


def test_fresh_chain_and_appends_verify(db: Database) -> None:
    assert verify(db) == audit.Verification(True, 0)
    append(db, 25)
    result = verify(db)
    assert result.ok and result.checked == 25
    with db.session() as s:
        events = s.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
        assert events[0].prev_hash == audit.GENESIS
        assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))


def test_altered_event_is_named(db: Database) -> None:
    append(db, 10)
    with db.session() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(actor="someone else"))
        s.commit()
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 4 and "altered" in result.problem


def test_altered_event_with_recomputed_hash_breaks_the_next_link(db: Database) -> None:
    append(db, 10)
    with db.session() as s:
        e = s.get(AuditEvent, 6)
        assert e is not None
        e.outcome = "refused"
        e.hash = audit.digest(e.prev_hash, e.seq, e.at, e.actor, e.action, e.target, e.outcome, e.reasons, e.detail)
        s.commit()
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 7


def test_deleted_event_is_named(db: Database) -> None:
    append(db, 10)
    with db.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
        s.commit()
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 5 and "deleted" in result.problem


def test_removed_tail_is_detected(db: Database) -> None:
    append(db, 10)
    with db.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq > 8))
        s.commit()
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 9 and "removed" in result.problem


def test_inserted_event_is_named(db: Database) -> None:
    append(db, 10)
    with db.session() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq > 5).values(seq=AuditEvent.seq + 1000))
        s.execute(update(AuditEvent).where(AuditEvent.seq > 1000).values(seq=AuditEvent.seq - 999))
        five = s.get(AuditEvent, 5)
        assert five is not None
        forged = {"seq": 6, "at": five.at, "actor": "forger", "action": "test.event", "target": "x", "outcome": "ok",
                      "reasons": "[]", "detail": "{}", "prev_hash": five.hash}
        forged["hash"] = audit.digest(five.hash, 6, five.at, "forger", "test.event", "x", "ok", "[]", "{}")
        s.add(AuditEvent(**forged))
        s.commit()
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 7 and "inserted or reordered" in result.problem


def test_reordered_events_are_named(db: Database) -> None:
    append(db, 10)
    with db.session() as s:
        a, b = s.get(AuditEvent, 3), s.get(AuditEvent, 4)
        assert a is not None and b is not None
        fields = ("at", "actor", "action", "target", "outcome", "reasons", "detail", "prev_hash", "hash")
        va, vb = [getattr(a, f) for f in fields], [getattr(b, f) for f in fields]
        for f, x, y in zip(fields, va, vb, strict=True):
            setattr(a, f, y)
            setattr(b, f, x)
        s.commit()
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 3


def test_change_and_its_event_commit_together_or_not_at_all(db: Database) -> None:
    op = Principal.system("test")
    with db.session() as s, unit_of_work(s, op):
        identity.create_user(s, op, UserCreate(email="one@test.example", name="One"))
    before = verify(db).checked
    with pytest.raises(Conflict), db.session() as s, unit_of_work(s, op):
        identity.create_user(s, op, UserCreate(email="two@test.example", name="Two"))
        identity.create_user(s, op, UserCreate(email="one@test.example", name="Again"))
    with db.session() as s:
        assert s.scalar(select(User).where(User.email == "two@test.example")) is None
    after = verify(db)
    assert after.ok and after.checked == before


def test_failure_after_event_rolls_back_both(db: Database) -> None:
    op = Principal.system("test")
    with pytest.raises(RuntimeError), db.session() as s, unit_of_work(s, op):
        identity.create_user(s, op, UserCreate(email="three@test.example", name="Three"))
        raise RuntimeError("disk on fire")
    with db.session() as s:
        assert s.scalar(select(User).where(User.email == "three@test.example")) is None
        assert s.scalar(select(AuditEvent)) is None
        head = s.get(AuditHead, 1)
        assert head is not None and head.last_seq == 0


def test_concurrent_writers_never_fork_the_chain(settings: Settings) -> None:
    """Eight threads, each with its own engine (like separate server processes), append at once."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        db = Database(settings)
        try:
            for i in range(25):
                with db.session() as s:
                    audit.record(s, actor=f"writer-{n}", action="test.concurrent", detail={"i": i})
                    s.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = Database(settings)
    with db.session() as s:
        prevs = s.scalars(select(AuditEvent.prev_hash)).all()
        assert len(prevs) == 200 and len(set(prevs)) == 200  # no two events share a predecessor
        result = audit.verify(s)
    db.dispose()
    assert result.ok and result.checked == 200


def test_filter_and_export_through_api(admin_client: TestClient, db: Database) -> None:
    append(db, 3, actor="robot")
    admin_client.post("/api/v1/organisations", json={"name": "Org A", "kind": "startup", "jurisdiction": "IN"})
    events = admin_client.get("/api/v1/audit/events", params={"actor": "robot"}).json()
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)
    assert {e["actor"] for e in events} == {"robot"} and len(events) == 3
    fam = admin_client.get("/api/v1/audit/events", params={"action": "identity.*"}).json()
    assert {e["action"] for e in fam} >= {"identity.organisation.create", "identity.key.create"}
    r = admin_client.get("/api/v1/audit/export", params={"actor": "robot"})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [x["target"] for x in lines] == ["thing:0", "thing:1", "thing:2"]
    assert admin_client.get("/api/v1/audit/verify").json() == {"ok": True, "checked": len(
        admin_client.get("/api/v1/audit/events", params={"limit": 1000}).json()), "first_bad_seq": None,
        "problem": ""}
    bad = admin_client.get("/api/v1/audit/events", params={"outcome": "maybe"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "outcome"


def test_audit_needs_admin(client: TestClient, db: Database) -> None:
    from tests.conftest import make_key, make_user

    member: dict[str, Any] = make_user(db, "m@test.example")
    headers = {"Authorization": f"Bearer {make_key(db, member['id'])}"}
    for path in ("/api/v1/audit/events", "/api/v1/audit/export", "/api/v1/audit/verify"):
        assert client.get(path, headers=headers).status_code == 403


def test_audit_head_row_exists_after_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT last_seq, last_hash FROM audit_head WHERE id = 1")).one() == (
            0, audit.GENESIS)


def test_rolled_back_savepoint_leaves_a_whole_chain(db: Database) -> None:
    with db.session() as s:
        audit.record(s, actor="t", action="test.before")
        nested = s.begin_nested()
        audit.record(s, actor="t", action="test.undone")
        nested.rollback()
        audit.record(s, actor="t", action="test.after")
        s.commit()
    with db.session() as s:
        assert [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))] == [
            "test.before", "test.after"]
    assert verify(db) == audit.Verification(True, 2)


def test_rolled_back_transaction_does_not_move_the_head(db: Database) -> None:
    with db.session() as s:
        audit.record(s, actor="t", action="test.undone")
        s.rollback()
        audit.record(s, actor="t", action="test.kept")
        s.commit()
        head = s.get(AuditHead, 1)
        assert head is not None and head.last_seq == 1
    assert verify(db) == audit.Verification(True, 1)


def test_record_many_appends_in_order_between_single_records(db: Database) -> None:
    append(db, 2)
    with db.session() as s:
        first = audit.record(s, actor="a", action="test.one")
        many = audit.record_many(s, [audit.Event(actor="b", action="test.many", target=f"t:{i}", detail={"i": i})
                                     for i in range(5)])
        last = audit.record(s, actor="c", action="test.one", outcome="refused", reasons=["because"])
        assert audit.record_many(s, []) == []
        s.commit()
    assert (first, many, last) == (3, [4, 5, 6, 7, 8], 9)
    assert verify(db) == audit.Verification(True, 9)
    with db.session() as s:
        targets = s.scalars(select(AuditEvent.target).where(AuditEvent.action == "test.many")
                            .order_by(AuditEvent.seq)).all()
        assert targets == [f"t:{i}" for i in range(5)]
        with pytest.raises(ValueError):
            audit.record_many(s, [audit.Event(actor="x", action="y"), audit.Event(actor="x", action="y",
                                                                                  outcome="maybe")])
        s.rollback()
    assert verify(db) == audit.Verification(True, 9)


def test_autocommit_sessions_cannot_append(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("session_autocommit is a normal session on SQLite")
    with db.session_autocommit() as s:
        with pytest.raises(RuntimeError, match="cannot append"):
            audit.record(s, actor="a", action="test.one")
    assert verify(db) == audit.Verification(True, 0)
