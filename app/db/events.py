"""All SQL about dl_job_events, the append-only history of each job. Functions never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Integer, Select, Table, Update, insert, literal, null, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJobEvent
from app.domain.states import JobEvent

events = cast(Table, DlJobEvent.__table__)


def logged_with(
    change: Update, event: JobEvent, details: dict[str, Any] | None = None
) -> Select[Any]:
    """Run `change` (which must return job_id and attempt) and log `event` for each row.

    One statement (a data-modifying CTE) writes the state and its history, so they never
    disagree and a transition costs one round trip.
    """
    changed = change.cte("changed")
    logged = (
        insert(events)
        .from_select(
            ["job_id", "event", "attempt", "details"],
            select(
                changed.c.job_id,
                literal(event.value),
                changed.c.attempt,
                type_coerce(details, JSONB) if details is not None else null(),
            ),
        )
        .cte("logged")
    )
    return select(changed).add_cte(logged)


async def add_event(
    session: AsyncSession,
    job_id: uuid.UUID,
    event: str,
    attempt: int,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one lifecycle event."""
    await session.execute(
        insert(events).values(job_id=job_id, event=event, attempt=attempt, details=details)
    )


async def list_events(
    session: AsyncSession, job_id: uuid.UUID, *, after_id: int | None, limit: int
) -> Sequence[DlJobEvent]:
    """Up to `limit` of the job's events, oldest first, with ids above `after_id`."""
    statement = select(DlJobEvent).where(events.c.job_id == job_id)
    if after_id is not None:
        statement = statement.where(events.c.id > after_id)
    statement = statement.order_by(events.c.id).limit(limit)
    return (await session.scalars(statement)).all()


async def original_max_attempts(session: AsyncSession, job_id: uuid.UUID) -> int | None:
    """The max_attempts the job was created with, if a retry has changed it since.

    The job's first `retried` event records it (`max_attempts_before`).
    """
    value = await session.scalar(
        select(events.c.details["max_attempts_before"].astext.cast(Integer))
        .where(events.c.job_id == job_id, events.c.event == JobEvent.RETRIED)
        .order_by(events.c.id)
        .limit(1)
    )
    return None if value is None else int(value)
