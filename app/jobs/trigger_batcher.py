"""Group commit for triggers: concurrent single-job triggers share one transaction.

Each trigger still answers only after its job is committed, and keeps its own idempotency
(enqueue_many_in_session resolves shared keys). What they share is the statement and the
commit: under load one round of N triggers costs about what one trigger costs alone, and
pgqueuer's statement-level NOTIFY trigger fires once per round instead of N times.

A lone trigger is written at once; a round forms only from the triggers that arrived while
the previous round was being written. Specs are validated before they join a round, so a bad
request fails alone; if a round's transaction fails anyway, each of its jobs is retried in a
transaction of its own, so one unlucky job cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.spec import JobCreate
from app.domain.views import JobCreated
from app.jobs.enqueue import enqueue_checked_in_session
from app.jobs.validation import check_spec
from app.settings import Settings

logger = logging.getLogger("app.jobs.trigger_batcher")

MAX_ROUND = 500

_Waiting = tuple[JobCreate, asyncio.Future[JobCreated]]


@dataclass
class TriggerBatcher:
    """Writes waiting triggers together, one transaction per round."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    max_round: int = MAX_ROUND
    _waiting: list[_Waiting] = field(default_factory=list)
    _wakeup: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None

    async def trigger(self, spec: JobCreate) -> JobCreated:
        """Create the job (or find it by idempotency_key); returns once it is committed."""
        spec = check_spec(spec)
        future: asyncio.Future[JobCreated] = asyncio.get_running_loop().create_future()
        self._waiting.append((spec, future))
        self._ensure_running().set()
        return await future

    async def close(self) -> None:
        """Stop the writer (triggers still waiting are failed by cancellation)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._waiting:
            future.cancel()

    def _ensure_running(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve(self._wakeup), name="trigger-batcher")
        return self._wakeup

    async def _serve(self, wakeup: asyncio.Event) -> None:
        while True:
            await wakeup.wait()
            wakeup.clear()
            while self._waiting:
                batch = self._waiting[: self.max_round]
                del self._waiting[: self.max_round]
                await self._write(batch)

    async def _write(self, batch: list[_Waiting]) -> None:
        live = [(spec, future) for spec, future in batch if not future.done()]
        if not live:
            return
        try:
            async with self.sessions() as session, session.begin():
                results = await enqueue_checked_in_session(
                    session, [spec for spec, _ in live], self.settings
                )
        except Exception as error:
            if len(live) == 1:
                _settle(live[0][1], error=error)
                return
            logger.warning("a round of %d triggers failed; writing them one by one", len(live))
            for waiting in live:
                await self._write([waiting])
            return
        for (_, future), result in zip(live, results, strict=True):
            _settle(future, result=result)


def _settle(
    future: asyncio.Future[JobCreated],
    *,
    result: JobCreated | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)
