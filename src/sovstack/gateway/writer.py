"""Group commit of finished calls: one transaction for every call that finished while the last one wrote.

Each request still waits until its own usage row and audit event are committed (so metering is never
behind the client), but concurrent requests share a commit instead of queueing one by one on the
database's write lock. On SQLite the batch is written on the event loop when the write lock is free,
and handed to a worker thread to wait for it when it is not.
"""

from __future__ import annotations

import asyncio
import contextvars

from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from sovstack.core.db import Database
from sovstack.gateway.metering import Call, Counters, stage_many

MAX_BATCH = 128
Item = tuple[Call, str | None, Counters, "asyncio.Future[None]"]


class MeterWriter:
    """The per-process writer; its queue and task live on the event loop that first used it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Item] | None = None
        self._task: asyncio.Task[None] | None = None

    def _ensure(self) -> asyncio.Queue[Item]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None or self._task is None or self._task.done():
            self._loop, self._queue = loop, asyncio.Queue()
            # A context of its own: not a copy of the request that happened to start it (its request id).
            self._task = loop.create_task(self._run(self._queue), context=contextvars.Context())
        return self._queue

    async def submit(self, call: Call, budget_period: str | None, counters: Counters) -> None:
        """Record the call; returns once it is committed (raises what the commit raised)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ensure().put_nowait((call, budget_period, counters, future))
        await future

    async def _run(self, queue: asyncio.Queue[Item]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                if not self._write_now(batch):
                    await run_in_threadpool(self._write, batch)
            except SQLAlchemyError as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for *_, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _write_now(self, batch: list[Item]) -> bool:
        """SQLite: write on the loop if the write lock is free (a batch takes well under a millisecond);
        False when another connection holds it, and the batch goes to a worker thread to wait."""
        if self.db.dialect != "sqlite":
            return False
        try:
            with self.db.session_nowait() as session:
                self._stage(session, batch)
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                return False
            raise
        return True

    def _write(self, batch: list[Item]) -> None:
        def work() -> None:
            with self.db.session() as session:
                self._stage(session, batch)

        self.db.reconnecting(work)  # a pooled connection the server dropped fails before anything is written

    @staticmethod
    def _stage(session: Session, batch: list[Item]) -> None:
        by_counters: dict[int, tuple[Counters, list[tuple[Call, str | None]]]] = {}
        for call, period, counters, _ in batch:  # one Counters per app; tests may swap it mid-run
            by_counters.setdefault(id(counters), (counters, []))[1].append((call, period))
        for counters, calls in by_counters.values():
            stage_many(session, counters, calls)
        session.commit()

    async def aclose(self) -> None:
        """Stop the writer after it has written what is queued."""
        queue, task = self._queue, self._task
        if task is None or queue is None or task.done():
            return
        while not queue.empty():
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
