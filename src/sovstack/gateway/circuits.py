"""Circuits as the server processes see them, for the CLI, the API and the console.

Each process keeps its circuits in memory (routing.Breakers: the hot path never waits on the database
for them). So that a command in another process can tell what the servers see, each process writes
its circuits' transitions — opened, probing (half-open), closed — to ``gateway_circuits``, one row per
deployment and process. Transitions are rare (three failures open a circuit, then one probe per
cool-down), so a single worker thread writes them in order, off the event loop; a request never
writes here. A report is only as fresh as its process: an ``open`` older than the cool-down is shown
as half-open, since that process would now let a probe through, and a dead process's report cannot
keep a deployment looking open.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from sovstack.core.base import rfc3339, utcnow
from sovstack.core.db import Database
from sovstack.gateway.routing import COOL_DOWN_SECONDS, Breaker, Breakers
from sovstack.gateway.tables import CircuitReport, Deployment

log = logging.getLogger(__name__)
SEVERITY = {"closed": 0, "half-open": 1, "open": 2}


def process_name() -> str:
    """This server process as reports name it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Transition:
    deployment_id: int
    state: str
    failures: int
    opened_at: datetime | None
    at: datetime


@dataclass(frozen=True)
class CircuitView:
    """A deployment's circuit as one process reported it (the most severe report when several did)."""

    state: str = "closed"
    process: str | None = None
    at: datetime | None = None
    failures: int = 0
    detail: str = ""


CLOSED = CircuitView(detail="no process has reported a failure")


class CircuitReporter:
    """The ``routing.Observer`` of one app's breakers: hands each transition to a writer thread."""

    def __init__(self, db: Database, process: str | None = None) -> None:
        self.db = db
        self.process = process or process_name()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sovstack-circuits")
        self._closed = False

    def __call__(self, deployment_id: int, breaker: Breaker) -> None:
        if self._closed:  # a stream ending while the app shuts down: nobody is left to read the report
            return
        now_mono, now = time.monotonic(), utcnow()
        opened = None if breaker.opened_at is None else now - timedelta(seconds=now_mono - breaker.opened_at)
        self._writer.submit(self._write, Transition(deployment_id, breaker.state(now_mono), breaker.failures,
                                                    opened, now))

    def _write(self, t: Transition) -> None:
        try:
            with self.db.session() as session:
                row = session.get(CircuitReport, (t.deployment_id, self.process))
                if row is None:
                    row = CircuitReport(deployment_id=t.deployment_id, process=self.process)
                    session.add(row)
                row.state, row.failures, row.opened_at, row.at = t.state, t.failures, t.opened_at, t.at
                session.commit()
        except SQLAlchemyError as exc:  # a lost report only makes the display stale; routing is unaffected
            log.warning("could not report circuit %s of deployment %s: %s", t.state, t.deployment_id, exc)

    def flush(self) -> None:
        """Wait until every transition handed over so far is written (tests, shutdown)."""
        self._writer.submit(lambda: None).result()

    def close(self) -> None:
        self._closed = True
        self._writer.shutdown(wait=True)


def _view(state: str, process: str, at: datetime, failures: int, opened_at: datetime | None,
          now: datetime, cool_down: float = COOL_DOWN_SECONDS) -> CircuitView:
    where = f"in {process}"
    if state == "open" and opened_at is not None:
        if (now - opened_at).total_seconds() >= cool_down:
            return CircuitView("half-open", process, at, failures,
                               f"opened {rfc3339(opened_at)} {where}; its cool-down has passed, so the next call "
                               f"there probes the deployment")
        return CircuitView("open", process, at, failures,
                           f"open since {rfc3339(opened_at)} {where} after {failures} failures")
    if state == "half-open":
        return CircuitView(state, process, at, failures, f"probing since {rfc3339(at)} {where}")
    return CircuitView(state, process, at, failures, f"closed {rfc3339(at)} {where}")


def _local(process: str, breakers: Breakers, now: datetime) -> Iterable[tuple[int, CircuitView]]:
    now_mono = time.monotonic()
    for deployment_id, b in list(breakers.by_deployment.items()):
        if b.opened_at is None:
            continue
        opened = now - timedelta(seconds=now_mono - b.opened_at)
        yield deployment_id, _view("open" if not b.probing else "half-open", process, now, b.failures, opened, now,
                                   b.cool_down)


def reported(session: Session, local: tuple[str, Breakers] | None = None,
             now: datetime | None = None) -> dict[int, CircuitView]:
    """Each deployment's circuit: the most severe state any process reports, the latest among equals.

    ``local`` (a server's own process name and breakers) replaces that process's rows with its memory,
    which is ahead of its last write by the time the writer thread takes.
    """
    now = now or utcnow()
    process = local[0] if local else None
    cool_downs: dict[int, float] = dict(session.execute(select(Deployment.id, Deployment.cool_down_seconds)).all())
    views: list[tuple[int, CircuitView]] = [
        (r.deployment_id, _view(r.state, r.process, r.at, r.failures, r.opened_at, now,
                                cool_downs.get(r.deployment_id, COOL_DOWN_SECONDS)))
        for r in session.scalars(select(CircuitReport)) if r.process != process]
    if local:
        views.extend(_local(local[0], local[1], now))
    found: dict[int, CircuitView] = {}
    for deployment_id, view in views:
        best = found.get(deployment_id)
        if best is None or (SEVERITY[view.state], view.at or now) > (SEVERITY[best.state], best.at or now):
            found[deployment_id] = view
    return found
