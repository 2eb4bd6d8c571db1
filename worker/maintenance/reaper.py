"""The reaper: expired leases go back to queued (or end lost); lost dispatches are replaced."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import attempts, reaper_queries
from app.domain.states import JobEvent, JobStatus
from app.jobs.lifecycle import redispatch_in_session, requeue_in_session
from app.observability.metrics import worker_metrics
from worker.maintenance.service import MaintenanceService, require_positive

logger = logging.getLogger("worker.reaper")

PERIOD_SEC_DEFAULT = 10.0
BATCH_SIZE_DEFAULT = 500


@dataclass(frozen=True)
class ReaperConfig:
    """How often the reaper passes, and how many jobs one transaction of a pass takes on."""

    # Seconds between the end of a pass and the next (DL_REAPER_PERIOD_SEC): the longest a
    # lease stays expired, or a queued job without a dispatch, before the reaper acts
    # (invariants 5 and 8). A new term starts with a pass.
    period_sec: float = PERIOD_SEC_DEFAULT
    # Expired leases per transaction, then queued jobs without a dispatch per transaction;
    # the rest wait for the next pass.
    batch_size: int = BATCH_SIZE_DEFAULT

    def __post_init__(self) -> None:
        """Reject a period or batch size that is not above zero."""
        require_positive(self, period_sec=self.period_sec, batch_size=self.batch_size)


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
class Reaper(MaintenanceService):
    """Keeps invariant 5: every running job has a live lease, every queued job a dispatch."""

    sessions: async_sessionmaker[AsyncSession]
    schema: str
    config: ReaperConfig = field(default_factory=ReaperConfig)
    # This (leader) worker's id, written as `reaped_by` on the events the reaper writes;
    # their `worker_id` stays the worker whose attempt it was.
    worker_id: str | None = None

    @property
    def batch_size(self) -> int:
        """Jobs one transaction of a pass takes on (the config's)."""
        return self.config.batch_size

    async def pass_then_wait(self) -> float:
        """One pass, then a period's wait."""
        await self.run_once()
        return self.config.period_sec

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
