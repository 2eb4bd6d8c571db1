"""The reaper: expired leases go back to queued (or end lost); lost dispatches are replaced."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import attempts, reaper_queries
from app.domain.states import JobEvent, JobStatus
from app.jobs.lifecycle import redispatch_in_session, requeue_in_session
from app.observability.metrics import worker_metrics

logger = logging.getLogger("worker.reaper")


@dataclass(frozen=True)
class ReaperResult:
    """What one pass did."""

    requeued: int = 0
    lost: int = 0
    redispatched: int = 0

    @property
    def acted(self) -> bool:
        """Whether the pass changed anything."""
        return bool(self.requeued or self.lost or self.redispatched)


@dataclass
class Reaper:
    """Keeps invariant 5: every running job has a live lease, every queued job a dispatch."""

    sessions: async_sessionmaker[AsyncSession]
    schema: str
    batch_size: int = 500
    # This (leader) worker's id, written as `reaped_by` on the events the reaper writes;
    # their `worker_id` stays the worker whose attempt it was.
    worker_id: str | None = None

    def _reaped_by(self) -> dict[str, str]:
        return {} if self.worker_id is None else {"reaped_by": self.worker_id}

    async def run_once(self) -> ReaperResult:
        """One pass over expired leases, then over queued jobs without a dispatch."""
        requeued = lost = 0
        async with self.sessions() as session, session.begin():
            for job in await reaper_queries.lock_expired_leases(session, self.batch_size):
                details = {"worker_id": job.worker_id, **self._reaped_by()}
                if job.attempt < job.max_attempts:
                    requeued += await requeue_in_session(
                        session,
                        self.schema,
                        job.job_id,
                        job.attempt,
                        JobEvent.LEASE_EXPIRED,
                        delay_sec=0,
                        count_attempt=True,
                        error=f"lease expired on attempt {job.attempt}",
                        details=details,
                    )
                else:
                    lost += await attempts.finish_attempt(
                        await session.connection(),
                        job.job_id,
                        job.attempt,
                        JobStatus.LOST,
                        JobEvent.LOST,
                        error=f"lease expired on the last attempt ({job.attempt})",
                        details=details,
                    )
        redispatched = 0
        async with self.sessions() as session, session.begin():
            for queued in await reaper_queries.lock_undispatched(session, self.batch_size):
                await redispatch_in_session(
                    session,
                    self.schema,
                    queued.job_id,
                    queued.queue,
                    queued.priority,
                    queued.delay,
                    details=self._reaped_by() or None,
                )
                redispatched += 1
        result = ReaperResult(requeued=requeued, lost=lost, redispatched=redispatched)
        actions = worker_metrics().reaper_actions
        for action, count in (
            ("requeued", requeued),
            ("lost", lost),
            ("redispatched", redispatched),
        ):
            actions.labels(action).inc(count)
        if result.acted:
            logger.info("reaper: requeued=%d lost=%d redispatched=%d", requeued, lost, redispatched)
        return result
