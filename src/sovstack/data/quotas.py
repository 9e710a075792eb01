"""How many sandbox queries a person may send: per minute on all datasets, per day on each granted dataset.

Refused and failed queries count as much as answered ones (a flood of cheap refusals is how an attacker
probes, and how the stewards' view used to be flushed). Each query takes one unit with one guarded
UPDATE committed at once, so concurrent queries cannot pass a limit together, and a query that is then
refused or fails still counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sovstack.core.base import utcnow
from sovstack.core.errors import RateLimited
from sovstack.core.settings import Settings
from sovstack.data.tables import AccessGrant, Dataset, QueryQuota


def take_minute(session: Session, user_id: int, settings: Settings) -> None:
    """Count one query against the person's per-minute limit, or RateLimited with when to come back."""
    now = utcnow()
    window = f"m:{now:%Y%m%dT%H%M}"
    if not _take(session, user_id, window, settings.sandbox_queries_per_minute, stale="m:%"):
        raise RateLimited(f"more than {settings.sandbox_queries_per_minute} sandbox queries in a minute: wait "
                          "and try again", retry_after=60 - now.second, field="sql",
                          reasons=["the limit is per person, across every key and dataset"])


def take_daily(session: Session, user_id: int, settings: Settings, dataset: Dataset,
               grant: AccessGrant | None) -> None:
    """Count one query against the person's daily cap on ``dataset`` (the grant's own, else the default)."""
    cap = grant.daily_queries if grant is not None and grant.daily_queries else settings.sandbox_daily_queries
    now = utcnow()
    day = f"d:{now:%Y%m%d}:"
    if not _take(session, user_id, f"{day}{dataset.id}", cap, stale="d:%", keep=f"{day}%"):
        midnight = datetime(now.year, now.month, now.day) + timedelta(days=1)
        raise RateLimited(f"your daily cap of {cap} queries on {dataset.name} is used up: it resets at 00:00 UTC",
                          retry_after=int((midnight - now).total_seconds()) + 1, field="sql",
                          reasons=["the cap is per person and dataset, across every key; a steward sets it on "
                                   "the grant"])


def _take(session: Session, user_id: int, window: str, limit: int, stale: str, keep: str | None = None) -> bool:
    """One more in ``window`` if fewer than ``limit`` were counted there; committed either way it goes."""
    if session.scalar(select(QueryQuota.id).where(QueryQuota.user_id == user_id, QueryQuota.window == window)) is None:
        session.execute(delete(QueryQuota).where(  # the person's windows that have passed
            QueryQuota.user_id == user_id, QueryQuota.window.like(stale),
            ~QueryQuota.window.like(keep) if keep else QueryQuota.window != window))
        try:
            with session.begin_nested():
                session.add(QueryQuota(user_id=user_id, window=window, count=0))
        except IntegrityError:
            pass  # a concurrent query opened the window first
    taken = session.execute(
        update(QueryQuota).where(QueryQuota.user_id == user_id, QueryQuota.window == window,
                                 QueryQuota.count < limit)
        .values(count=QueryQuota.count + 1).execution_options(synchronize_session=False))
    session.commit()
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]
