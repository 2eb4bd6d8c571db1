"""The worker's finish writer: final statuses of many attempts in one statement.

It writes on a connection of its own, so finishing overlaps with the lock session starting
the next jobs. Once a round's write is committed it hands each job's lock back to the lock
session, and a caller hears the outcome only when its lock is free again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from functools import partial

import asyncpg

from app.domain.attempts import FinishRequest
from app.jobs.availability import database_unreachable
from app.jobs.connections import connect_finish_writer
from app.jobs.manager import JobManager
from worker.lock_session import LockSession, connection_lost, stop_serving

logger = logging.getLogger("worker.finish_writer")

RECONNECT_DELAY_SEC = 1.0
MAX_RECONNECT_DELAY_SEC = 5.0
MAX_FINISHES_PER_ROUND = 1000  # more wait for the next round: statements stay bounded

_Waiting = tuple[FinishRequest, str, asyncio.Future[bool]]


@dataclass
class FinishWriter:
    """Serves finish requests for this worker, batched, in one task."""

    dsn: str
    locks: LockSession
    _waiting: list[_Waiting] = field(default_factory=list)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _connection: asyncpg.Connection | None = None
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._jobs = JobManager(self.locks.schema)

    async def open(self) -> None:
        """Connect and start serving."""
        self._connection = await self._connect()
        self._task = asyncio.create_task(self._serve(), name="finish-writer")

    async def close(self) -> None:
        """Stop serving and disconnect."""
        await stop_serving(self._task, self._connection)

    async def finish(self, request: FinishRequest, lock_key: str) -> bool:
        """Write the attempt's final status, then free its lock; False when fenced out."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, lock_key, future))
        self._wakeup.set()
        return await future

    async def _serve(self) -> None:
        delay = RECONNECT_DELAY_SEC
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch = self._waiting[:MAX_FINISHES_PER_ROUND]
            del self._waiting[:MAX_FINISHES_PER_ROUND]
            if self._waiting:
                self._wakeup.set()
            owned: set[uuid.UUID] = set()
            error: Exception | None = None
            try:
                owned = await self._write(batch)
            except Exception as exc:
                if database_unreachable(exc):
                    # Kept, and sent again once the database answers: the pipelines ran to
                    # their end, and losing this write would run them a second time.
                    logger.warning(
                        "finishing %d attempt(s): database unreachable; trying again in %.1fs",
                        len(batch),
                        delay,
                    )
                    self._waiting[:0] = batch
                    self._wakeup.set()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RECONNECT_DELAY_SEC)
                    continue
                logger.exception("finishing %d attempt(s) failed", len(batch))
                error = exc
            delay = RECONNECT_DELAY_SEC
            for request, lock_key, future in batch:
                # The lock goes back whatever happened to the write: the pipeline has stopped.
                settle = partial(_settle, future, request.job_id in owned, error)
                self.locks.release_then(lock_key, request.job_id, settle)
            if error is not None:
                await asyncio.sleep(RECONNECT_DELAY_SEC)

    async def _connect(self) -> asyncpg.Connection:
        return await connect_finish_writer(self.dsn, self.locks.worker_id)

    async def _write(self, batch: list[_Waiting]) -> set[uuid.UUID]:
        """One statement; retried once on a fresh connection if the connection was gone.

        A retry after a write that did commit is harmless: the fence finds the job no longer
        running, and the caller hears that another attempt owns it.
        """
        requests = [request for request, _, _ in batch]
        try:
            return await self._write_once(requests)
        except Exception as exc:
            if self._connection is None or not connection_lost(exc, self._connection):
                raise
            logger.warning("finish writer lost its connection; reconnecting")
            self._connection.terminate()
        return await self._write_once(requests)

    async def _write_once(self, requests: list[FinishRequest]) -> set[uuid.UUID]:
        if self._connection is None or self._connection.is_closed():
            self._connection = await self._connect()
        return await self._jobs.finish_many(self._connection, requests, self.locks.worker_id)


def _settle(future: asyncio.Future[bool], owned: bool, error: Exception | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(owned)
