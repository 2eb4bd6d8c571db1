"""All SQL about dl_queues: pause state, rate limits, fairness. Functions flush, never commit.

How a pause keeps a large backlog free of dequeue churn (its dispatches are parked) is told
in app.db.pgqueuer_tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Table,
    case,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlQueue, DlRateBucket
from app.domain.fairness import QueueFairness
from app.domain.rate_limits import MAX_RATE_PERIOD_SEC, QueueLimits, RateLimit

queues = cast(Table, DlQueue.__table__)
buckets = cast(Table, DlRateBucket.__table__)


@dataclass(frozen=True)
class QueueState:
    """A dl_queues row."""

    queue: str
    paused: bool
    paused_at: datetime | None
    limits: QueueLimits
    fairness: QueueFairness


_STATE_COLUMNS = (
    queues.c.queue,
    queues.c.paused,
    queues.c.paused_at,
    queues.c.start_limit,
    queues.c.start_period_sec,
    queues.c.rate_key_limit,
    queues.c.rate_key_period_sec,
    queues.c.fair_by_partition,
)


def _limit(count: int | None, period_sec: float | None) -> RateLimit | None:
    return (
        None
        if count is None or period_sec is None
        else RateLimit(count=count, period_sec=period_sec)
    )


def _state(row: Any) -> QueueState:
    return QueueState(
        queue=row.queue,
        paused=row.paused,
        paused_at=row.paused_at,
        limits=QueueLimits(
            start=_limit(row.start_limit, row.start_period_sec),
            per_rate_key=_limit(row.rate_key_limit, row.rate_key_period_sec),
        ),
        fairness=QueueFairness(by="partition_key" if row.fair_by_partition else None),
    )


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
        .returning(*_STATE_COLUMNS)
    )
    return _state((await session.execute(statement)).one())


async def set_limits_in_session(
    session: AsyncSession, queue: str, limits: QueueLimits
) -> QueueState:
    """Replace the queue's rate limits (None removes one); workers count by them at once."""
    values = {
        "start_limit": None if limits.start is None else limits.start.count,
        "start_period_sec": None if limits.start is None else limits.start.period_sec,
        "rate_key_limit": None if limits.per_rate_key is None else limits.per_rate_key.count,
        "rate_key_period_sec": (
            None if limits.per_rate_key is None else limits.per_rate_key.period_sec
        ),
    }
    return await _set(session, queue, values)


async def set_fairness_in_session(
    session: AsyncSession, queue: str, fairness: QueueFairness
) -> QueueState:
    """Make the queue fair by partition_key or not, for the jobs triggered from now on
    (app.db.fairness); jobs already queued keep the order they were given."""
    values = {"fair_by_partition": fairness.by == "partition_key"}
    return await _set(session, queue, values)


async def _set(session: AsyncSession, queue: str, values: dict[str, Any]) -> QueueState:
    """Write `values` to the queue's row, created if it has none; the row as it is now."""
    statement = (
        insert(queues)
        .values(queue=queue, updated_at=func.now(), **values)
        .on_conflict_do_update(
            index_elements=[queues.c.queue], set_={**values, "updated_at": func.now()}
        )
        .returning(*_STATE_COLUMNS)
    )
    return _state((await session.execute(statement)).one())


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
    """dl_queues rows (the table is tiny: one row per queue an operator paused, limited or
    made fair)."""
    statement = select(*_STATE_COLUMNS)
    if queue is not None:
        statement = statement.where(queues.c.queue == queue)
    return [_state(row) for row in await session.execute(statement)]


async def delete_idle_buckets_in_session(session: AsyncSession) -> int:
    """Forget rate buckets untouched for longer than any period (a rate_key no longer used).

    A bucket's starts count for one period at most (MAX_RATE_PERIOD_SEC), and one whose
    line of waiting jobs lies in the past promises nothing: dropping it changes no answer.
    """
    idle = literal(MAX_RATE_PERIOD_SEC) * literal_column("interval '1 second'")
    result = await session.execute(
        delete(buckets).where(
            buckets.c.updated_at < func.now() - idle,
            or_(buckets.c.promise_at.is_(None), buckets.c.promise_at < func.now()),
        )
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)
