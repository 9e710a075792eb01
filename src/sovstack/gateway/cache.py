"""Exact-match answer cache, per organisation, off unless the organisation's admins turn it on.

An organisation that asks the same question many times (a form's fixed prompt, an evaluation rerun,
embeddings of the same documents) may keep answers for ``ttl_seconds``: a request whose organisation,
endpoint, model, classification and whole body (keys sorted) match a kept answer gets it back without
calling a model, marked ``x-sovstack-cache: hit``, metered at no tokens (outcome ``cached``) and audited.

- Never for a ``sensitive`` request, never for a stream, never across organisations (the key holds the
  organisation).
- ``Cache-Control: no-cache`` asks a model afresh (and keeps the new answer); ``no-store`` neither reads
  nor keeps.
- Answers are encrypted at rest (Fernet, with a key derived from the deployment secret), in the database
  or, when ``SOVSTACK_REDIS_URL`` is set, in Redis with an expiry.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import orjson
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete
from sqlalchemy.orm import Session

from sovstack.core.base import utcnow
from sovstack.core.db import Database
from sovstack.core.settings import Settings
from sovstack.gateway.tables import CachedAnswer

ENDPOINTS = frozenset(("chat", "embeddings"))
HEADER = "x-sovstack-cache"


@dataclass(frozen=True)
class Lookup:
    """Where one request's answer is (or would be) kept, and whether to read and keep it."""

    key: str
    organisation_id: int
    ttl: int
    read: bool
    keep: bool


def lookup_for(organisation_id: int | None, ttl: int | None, endpoint: str, model: str, classification: str,
               body: dict[str, Any], cache_control: str) -> Lookup | None:
    """The request's cache entry, or None when this request may not use the cache at all."""
    if (organisation_id is None or not ttl or endpoint not in ENDPOINTS or classification == "sensitive"
            or body.get("stream")):
        return None
    directives = {d.strip().lower() for d in cache_control.split(",")}
    if "no-store" in directives:
        return None
    digest = hashlib.sha256(f"{organisation_id}|{endpoint}|{model}|{classification}|".encode())
    digest.update(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    return Lookup(digest.hexdigest(), organisation_id, ttl, read="no-cache" not in directives, keep=True)


class Store(Protocol):
    def get(self, key: str) -> bytes | None:
        """The kept answer (encrypted), or None when absent or expired."""

    def put(self, key: str, organisation_id: int, ttl: int, sealed: bytes) -> None:
        """Keep an answer (encrypted) for ``ttl`` seconds."""

    def purge(self, session: Session, organisation_id: int) -> int:
        """Forget every answer kept for the organisation (in ``session``'s transaction where it can); how many."""


class DatabaseStore:
    """Answers in the deployment's database; expired rows are deleted as new ones are written."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> bytes | None:
        with self.db.session() as s:
            row = s.get(CachedAnswer, key)
            if row is None or row.expires_at <= utcnow():
                return None
            return row.body.encode()

    def put(self, key: str, organisation_id: int, ttl: int, sealed: bytes) -> None:
        now = utcnow()
        with self.db.session() as s:
            s.execute(delete(CachedAnswer).where(CachedAnswer.expires_at <= now))
            row = s.get(CachedAnswer, key) or CachedAnswer(key=key, organisation_id=organisation_id)
            row.expires_at, row.body = now + timedelta(seconds=ttl), sealed.decode()
            s.add(row)
            s.commit()

    def purge(self, session: Session, organisation_id: int) -> int:
        # The caller's transaction: it may already hold SQLite's write lock (turning the cache off).
        result = session.execute(delete(CachedAnswer).where(CachedAnswer.organisation_id == organisation_id))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass
class RedisStore:
    client: Any

    def get(self, key: str) -> bytes | None:
        value = self.client.get(f"sovstack:cache:{key}")
        return bytes(value) if value is not None else None

    def put(self, key: str, organisation_id: int, ttl: int, sealed: bytes) -> None:
        pipe = self.client.pipeline()
        pipe.set(f"sovstack:cache:{key}", sealed, ex=ttl)
        pipe.sadd(f"sovstack:cache-org:{organisation_id}", key)
        pipe.expire(f"sovstack:cache-org:{organisation_id}", ttl)
        pipe.execute()

    def purge(self, session: Session, organisation_id: int) -> int:
        keys = [k.decode() if isinstance(k, bytes) else k
                for k in self.client.smembers(f"sovstack:cache-org:{organisation_id}")]
        if keys:
            self.client.delete(*[f"sovstack:cache:{k}" for k in keys])
        self.client.delete(f"sovstack:cache-org:{organisation_id}")
        return len(keys)


class AnswerCache:
    """The store, and the key that seals what goes in it."""

    def __init__(self, settings: Settings, store: Store) -> None:
        digest = hashlib.sha256(b"sovstack-gateway-answer-cache:" + settings.signing_key().encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self.store = store

    def get(self, found: Lookup) -> bytes | None:
        sealed = self.store.get(found.key)
        if sealed is None:
            return None
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken:
            return None  # sealed under an earlier deployment secret: a miss, and overwritten on the next put

    def put(self, found: Lookup, answer: bytes) -> None:
        self.store.put(found.key, found.organisation_id, found.ttl, self._fernet.encrypt(answer))


def store_for(settings: Settings, db: Database) -> Store:
    if settings.redis_url:
        import redis

        return RedisStore(redis.Redis.from_url(settings.redis_url))
    return DatabaseStore(db)
