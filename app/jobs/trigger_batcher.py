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

import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.spec import JobSpec
from app.domain.views import EnqueueResult
from app.jobs.batching import Round, RoundBatcher
from app.jobs.enqueue import enqueue_checked_in_session
from app.jobs.validation import check_spec
from app.settings import Settings

logger = logging.getLogger("app.jobs.trigger_batcher")

MAX_ROUND = 500


@dataclass
class TriggerBatcher:
    """Writes waiting triggers together, one transaction per round."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    max_round: int = MAX_ROUND
    _rounds: RoundBatcher[JobSpec, EnqueueResult] = field(init=False)

    def __post_init__(self) -> None:
        # A trigger whose client went away is dropped from its round: nothing was written.
        self._rounds = RoundBatcher(self._write, self.max_round, name="trigger-batcher")

    async def trigger(self, spec: JobSpec) -> EnqueueResult:
        """Create the job (or find it by idempotency_key); returns once it is committed."""
        return await self._rounds.submit(check_spec(spec))

    async def close(self) -> None:
        """Stop the writer (triggers still waiting are failed by cancellation)."""
        await self._rounds.close()

    async def _write(self, batch: Round[JobSpec, EnqueueResult]) -> None:
        if not batch:
            return
        try:
            async with self.sessions() as session, session.begin():
                results = await enqueue_checked_in_session(session, batch.requests, self.settings)
        except Exception as error:
            if len(batch) == 1:
                batch.fail_all(error)
                return
            logger.warning("a round of %d triggers failed; writing them one by one", len(batch))
            for entry in batch:
                if not entry.abandoned:  # its client may have gone meanwhile
                    await self._write(Round([entry]))
            return
        batch.settle_all(results)
