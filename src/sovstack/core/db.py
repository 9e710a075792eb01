"""Engines, sessions and migrations of a deployment's one database (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sovstack.core import audit
from sovstack.core.base import Base, utcnow
from sovstack.core.errors import Conflict, Unavailable
from sovstack.core.settings import Settings

__all__ = ["Base", "Database", "flush_unique", "utcnow"]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
T = TypeVar("T")
RETRY_BUSY_SECONDS = 2  # what a 503 for a busy SQLite database tells the client to wait
RETRY_DOWN_SECONDS = 10  # … and for a database that did not answer at all


def flush_unique(session: Session, what: str, field: str, value: str) -> None:
    """Flush pending rows; a unique-constraint violation becomes a Conflict naming ``field`` (409)."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"{what} {value!r} already exists", field=field) from exc


def _sqlite_pragmas(busy_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    return on_connect


class Database:
    """One engine and its session factory; lives on the app object, never at module level."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = settings.sqlalchemy_url
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            settings.home.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": settings.sqlite_busy_seconds}
        else:
            # No ping per checkout (a round trip on every request): a connection the server dropped
            # fails its first statement, which invalidates the pool; callers with idempotent work retry
            # with ``Database.reconnecting``; connections are also replaced every half hour.
            kwargs.update(pool_pre_ping=False, pool_recycle=1800, pool_size=10, max_overflow=10)
        self.engine: Engine = create_engine(url, **kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        audit.attach(self.sessions)
        self._autocommit = sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                                        expire_on_commit=False)
        self._nowait_engine: Engine | None = None
        self._nowait = self.sessions
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas(int(settings.sqlite_busy_seconds * 1000)))
            self._nowait_engine = create_engine(url, **kwargs)  # connects only when first used
            event.listen(self._nowait_engine, "connect", _sqlite_pragmas(0))
            self._nowait = sessionmaker(self._nowait_engine, expire_on_commit=False)
            audit.attach(self._nowait)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that is closed afterwards; the caller commits."""
        with self.sessions() as session:
            yield session

    @contextmanager
    def session_nowait(self) -> Iterator[Session]:
        """SQLite: a session whose connection fails at once ("database is locked") instead of waiting
        for another connection's write lock — for work on an event loop, which must never wait.
        Other databases: a normal session (their waits are the caller's to avoid)."""
        with self._nowait() as session:
            yield session

    def reconnecting(self, work: Callable[[], T]) -> T:
        """Run idempotent ``work``; once more if the server had dropped the pooled connection it used."""
        try:
            return work()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return work()

    @contextmanager
    def session_autocommit(self) -> Iterator[Session]:
        """PostgreSQL: a session whose every statement commits on its own — no BEGIN and ROLLBACK
        round trips around a request's reads. For reads and single-statement writes only: the audit
        log refuses to append in it (its chain needs one transaction). SQLite: a normal session."""
        if self.dialect != "postgresql":
            with self.session() as session:
                yield session
            return
        with self._autocommit() as session:
            session.info[audit.NO_APPEND] = True
            yield session

    def ping(self) -> None:
        """Raise Unavailable unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise Unavailable(f"database unreachable: {_first_line(exc)}", retry_after=RETRY_DOWN_SECONDS) from exc

    def _alembic(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self) -> None:
        """Apply every migration not yet applied (idempotent)."""
        self.ping()
        command.upgrade(self._alembic(), "head")

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self._alembic()).get_current_head()

    def revisions(self) -> list[str]:
        """Every migration this sovstack knows, newest first."""
        return [script.revision for script in ScriptDirectory.from_config(self._alembic()).walk_revisions()]

    def is_current(self) -> bool:
        return self.current_revision() == self.head_revision()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._nowait_engine is not None:
            self._nowait_engine.dispose()


def is_busy(exc: OperationalError) -> bool:
    """True when SQLite gave up waiting for another connection's write lock (not a database that is down)."""
    return "database is locked" in str(exc.orig) or "database table is locked" in str(exc.orig)


def unavailable(exc: OperationalError) -> Unavailable:
    """What the user is told when the database did not do a request's work: busy, or down (never its SQL)."""
    if is_busy(exc):
        return Unavailable("the database is busy with another write; try again in a moment",
                           retry_after=RETRY_BUSY_SECONDS)
    return Unavailable("the database is unavailable; try again shortly", retry_after=RETRY_DOWN_SECONDS)


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
