"""The reaper: expired leases go back to queued (or end lost); lost dispatches are replaced."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from app.jobs.manager import JobManager, RescueResult
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


@dataclass
class Reaper(MaintenanceService):
    """Keeps invariant 5: every running job has a live lease, every queued job a dispatch."""

    manager: JobManager
    config: ReaperConfig = field(default_factory=ReaperConfig)
    # This (leader) worker's id, written as `reaped_by` on the events the reaper writes;
    # their `worker_id` stays the worker whose attempt it was.
    worker_id: str | None = None

    async def pass_then_wait(self) -> float:
        """One pass, then a period's wait."""
        await self.run_once()
        return self.config.period_sec

    async def run_once(self) -> RescueResult:
        """One pass over expired leases, then over queued jobs without a dispatch."""
        result = await self.manager.rescue(self.config.batch_size, reaped_by=self.worker_id)
        requeued, lost, redispatched = result.requeued, result.lost, result.redispatched
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
