"""Fair rounds: the leader moves each fair queue's base along with its front."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.domain.fairness import Rebase
from app.jobs.fair_rounds import FairRounds
from worker.maintenance.service import MaintenanceService, require_positive

logger = logging.getLogger("worker.fair_rounds")


@dataclass
class FairRoundsService(MaintenanceService):
    """A fair queue's dispatches carry rounds counted from its base; this keeps them within
    what a dispatch can carry, so fairness holds however long the queue runs."""

    rounds: FairRounds
    # Seconds between passes (DL_REAPER_PERIOD_SEC): a queue moves REBASE_AFTER rounds
    # between two rebases, far more than a period's starts.
    period_sec: float

    def __post_init__(self) -> None:
        """Reject a period that is not above zero."""
        require_positive(self, period_sec=self.period_sec)

    async def pass_then_wait(self) -> float:
        """One pass, then a period's wait."""
        await self.run_once()
        return self.period_sec

    async def run_once(self) -> list[Rebase]:
        """Rebase every fair queue that is due; logs each one."""
        done = await self.rounds.rebase_due()
        for rebase in done:
            logger.info(
                "fair rounds: queue %s based at round %d (%d dispatch(es) rewritten)",
                rebase.queue,
                rebase.base,
                rebase.rewritten,
            )
        return done
