"""All SQL about dl_queues: a queue's pause state. Functions flush, never commit.

How a pause keeps a large backlog free of dequeue churn (its dispatches are parked) is told
in app.db.pgqueuer_tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlQueue

queues = cast(Table, DlQueue.__table__)


@dataclass(frozen=True)
class QueueState:
    """A dl_queues row."""

    queue: str
    paused: bool
    paused_at: datetime | None


async def pause_in_session(session: AsyncSession, queue: str) -> QueueState:
    """Mark the queue paused (its row locked until commit); paused_at keeps the first pause."""
    statement = (
        insert(queues)
        .values(queue=queue, paused=True, paused_at=func.now(), updated_at=func.now())
        .on_conflict_do_update(
            index_elements=[queues.c.queue],
            set_={
                "paused": True,
                "paused_at": case((queues.c.paused, queues.c.paused_at), else_=func.now()),
                "updated_at": func.now(),
            },
        )
        .returning(queues.c.queue, queues.c.paused, queues.c.paused_at)
    )
    row = (await session.execute(statement)).one()
    return QueueState(**row._asdict())


async def resume_in_session(session: AsyncSession, queue: str) -> None:
    """Mark the queue running again (a queue without a row was never paused).

    The row update waits for every transaction that read the row as paused (FOR SHARE),
    so the dispatches those transactions parked are visible to unpark_dispatches.
    """
    await session.execute(
        update(queues)
        .where(queues.c.queue == queue)
        .values(paused=False, paused_at=None, updated_at=func.now())
    )


async def queue_states(session: AsyncSession, queue: str | None = None) -> list[QueueState]:
    """dl_queues rows (the table is tiny: one row per queue an operator ever paused)."""
    statement = select(queues.c.queue, queues.c.paused, queues.c.paused_at)
    if queue is not None:
        statement = statement.where(queues.c.queue == queue)
    return [QueueState(**row._asdict()) for row in await session.execute(statement)]
