"""The worker's finish writer: final statuses of many attempts in one statement.

It writes on a connection of its own, so finishing overlaps with the lock session starting
the next jobs. Once a round's write is committed it hands each job's lock back to the lock
session, and a caller hears the outcome only when its lock is free again.

Rounds come from app.jobs.batching. A finish is written even if its caller went away, and a
round the database could not take is put back at the front and sent again after a growing
delay: the pipelines ran, so losing the write would run them a second time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from functools import partial

import asyncpg

from app.domain.attempts import FinishRequest
from app.jobs.availability import database_unreachable, transient_conflict
from app.jobs.batching import Round, RoundBatcher, Waiting
from app.jobs.connections import connect_finish_writer
from app.jobs.manager import JobManager
from worker.lock_session import LockSession, connection_lost, stop_serving

logger = logging.getLogger("worker.finish_writer")

RECONNECT_DELAY_SEC = 1.0
# A finished attempt's write is tried again at least every second while the database is
# unreachable: its heartbeat keeps the lease meanwhile (worker.runner), but a quick write
# once the database is back frees the job's lock_key for the next job sooner.
MAX_RECONNECT_DELAY_SEC = 1.0
MAX_FINISHES_PER_ROUND = 1000  # more wait for the next round: statements stay bounded
CONFLICT_PAUSE_SEC = 0.05

# A finish and the lock_key its attempt holds (given back once the write is done).
_Finish = tuple[FinishRequest, str]


@dataclass
class FinishWriter:
    """Serves finish requests for this worker, batched, in one task."""

    dsn: str
    locks: LockSession
    # DATABASE_URL is a pooler in transaction mode (Settings.behind_pooler).
    pooled: bool = False
    _connection: asyncpg.Connection | None = None
    _delay_sec: float = RECONNECT_DELAY_SEC
    _rounds: RoundBatcher[_Finish, bool] = field(init=False)

    def __post_init__(self) -> None:
        self._jobs = JobManager(self.locks.schema)
        # Kept even when its caller went away: the pipeline ran, its outcome must be written.
        self._rounds = RoundBatcher(
            self._write_round, MAX_FINISHES_PER_ROUND, name="finish-writer", keep_abandoned=True
        )

    async def open(self) -> None:
        """Connect and start serving."""
        self._connection = await self._connect()
        self._rounds.start()

    async def close(self) -> None:
        """Stop serving and disconnect."""
        await self._rounds.close()
        await stop_serving(None, self._connection)

    async def finish(self, request: FinishRequest, lock_key: str) -> bool:
        """Write the attempt's final status, then free its lock; False when fenced out."""
        return await self._rounds.submit((request, lock_key))

    async def _write_round(self, batch: Round[_Finish, bool]) -> None:
        """One round: write, then settle each caller once its lock is free again."""
        if not batch:
            return
        owned: set[uuid.UUID] = set()
        error: Exception | None = None
        try:
            owned = await self._write([request for request, _ in batch.requests])
        except Exception as exc:
            if transient_conflict(exc):
                # It lost a deadlock while releasing dependents (the finishes end parents
                # whose children another statement was releasing): nothing was written,
                # and the same round succeeds when sent again.
                logger.info("finishing %d attempt(s): deadlock; sending again", len(batch))
                self._rounds.put_back(batch)
                await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE_SEC))
                return
            if database_unreachable(exc):
                # Kept, and sent again once the database answers: the pipelines ran to
                # their end, and losing this write would run them a second time.
                logger.warning(
                    "finishing %d attempt(s): database unreachable; trying again in %.1fs",
                    len(batch),
                    self._delay_sec,
                )
                self._rounds.put_back(batch)
                await asyncio.sleep(self._delay_sec)
                self._delay_sec = min(self._delay_sec * 2, MAX_RECONNECT_DELAY_SEC)
                return
            logger.exception("finishing %d attempt(s) failed", len(batch))
            error = exc
        self._delay_sec = RECONNECT_DELAY_SEC
        for entry in batch:
            request, lock_key = entry.request
            # The lock goes back whatever happened to the write: the pipeline has stopped.
            settle = partial(_settle, entry, request.job_id in owned, error)
            self.locks.release_then(lock_key, request.job_id, settle)
        if error is not None:
            await asyncio.sleep(RECONNECT_DELAY_SEC)

    async def _connect(self) -> asyncpg.Connection:
        return await connect_finish_writer(self.dsn, self.locks.worker_id, pooled=self.pooled)

    async def _write(self, requests: list[FinishRequest]) -> set[uuid.UUID]:
        """One statement; retried once on a fresh connection if the connection was gone.

        A retry after a write that did commit is harmless: the fence finds the job no longer
        running, and the caller hears that another attempt owns it.
        """
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


def _settle(entry: Waiting[_Finish, bool], owned: bool, error: Exception | None) -> None:
    if error is not None:
        entry.fail(error)
    else:
        entry.settle(owned)
