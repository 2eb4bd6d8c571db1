"""FairRounds: keeps each fair queue's base near its front (app.db.fairness)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import fairness
from app.domain.fairness import Rebase


@dataclass(frozen=True)
class FairRounds:
    """Moves the base of the fair queues whose front has gone far enough past it."""

    sessions: async_sessionmaker[AsyncSession]
    schema: str

    async def rebase_due(self) -> list[Rebase]:
        """One look at every queue's front, then one transaction per queue to rebase."""
        async with self.sessions() as session, session.begin():
            due = await fairness.queues_to_rebase(session, self.schema)
        done = []
        for queue, front in due:
            async with self.sessions() as session, session.begin():
                done.append(await fairness.rebase_in_session(session, self.schema, queue, front))
        return done
