"""Fill a deployment fast: a long valid audit chain and many gateway usage rows, straight through the driver."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta
from pathlib import Path

from sovstack.core import audit
from sovstack.core.db import Database

USAGE = ("INSERT INTO gateway_usage (id, at, key_prefix, organisation_id, model, deployment, endpoint, classification, "
         "language, tokens_in, tokens_out, cost, currency, latency_ms, tries, outcome, estimated) "
         "VALUES ({})").format(", ".join(["?"] * 17))
EVENT = "INSERT INTO audit_events VALUES ({})".format(", ".join(["?"] * 10))


def fill(db: Database, *, events: int, usage: int, batch: int = 20_000) -> None:
    """Append ``events`` chained audit events and ``usage`` usage rows to a SQLite deployment."""
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        prev = audit.GENESIS
        for first in range(1, events + 1, batch):
            rows = []
            for seq in range(first, min(first + batch, events + 1)):
                fields = (seq, f"2026-01-01T00:00:{seq % 60:02d}.{seq % 1_000_000:06d}Z", f"user{seq % 97}@bench",
                          "gateway.call", f"model:{seq % 7}", "ok", "[]", f'{{"n":{seq}}}')
                h = audit.digest(prev, *fields)
                rows.append((*fields, prev, h))
                prev = h
            cur.executemany(EVENT, rows)
        cur.execute("UPDATE audit_head SET last_seq = ?, last_hash = ? WHERE id = 1", (events, prev))
        start = datetime(2026, 1, 1)
        for first in range(1, usage + 1, batch):
            cur.executemany(USAGE, [(i, start + timedelta(seconds=i), f"sk-{i % 50:04d}", i % 5 + 1, "bench-model",
                                     "bench-dep", "chat", "open", "en", 100 + i % 900, 20 + i % 300, i % 1000 / 1e4,
                                     "USD", 12.5 + i % 100, 1, "ok", i % 2 == 0)
                                    for i in range(first, min(first + batch, usage + 1))])
        raw.commit()
    finally:
        raw.close()


def big_object(objects: Path, megabytes: int) -> tuple[Path, str]:
    """A content-addressed object of ``megabytes`` (zeros, sparse on disk until copied) in the store."""
    size, sha = megabytes * 1024 * 1024, hashlib.sha256()
    zeros = bytes(1 << 20)
    for _ in range(megabytes):
        sha.update(zeros)
    name = sha.hexdigest()
    path = objects / "data" / name[:2] / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.truncate(size)
    os.utime(path)
    return path, name
