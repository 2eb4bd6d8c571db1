"""The reaper: expired leases go back to queued (or end lost); lost dispatches are replaced."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.jobs.manager import JobManager, RescueResult
from app.observability.metrics import worker_metrics

logger = logging.getLogger("worker.reaper")


@dataclass
class Reaper:
    """Keeps invariant 5: every running job has a live lease, every queued job a dispatch."""

    manager: JobManager
    batch_size: int = 500
    # This (leader) worker's id, written as `reaped_by` on the events the reaper writes;
    # their `worker_id` stays the worker whose attempt it was.
    worker_id: str | None = None

    async def run_once(self) -> RescueResult:
        """One pass over expired leases, then over queued jobs without a dispatch."""
        result = await self.manager.rescue(self.batch_size, reaped_by=self.worker_id)
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
