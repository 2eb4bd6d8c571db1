"""All SQL about dl_job_events, the append-only history of each job. Functions never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    Integer,
    Select,
    Table,
    Update,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJob, DlJobEvent
from app.db.sql_common import cutoff
from app.domain.states import JobEvent

events = cast(Table, DlJobEvent.__table__)
jobs = cast(Table, DlJob.__table__)


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


@dataclass(frozen=True)
class OrphanWindow:
    """One step of the sweep for events whose job is gone."""

    scanned: int
    deleted: int
    # The highest event id looked at, and whether that event is older than the retention
    # (ids grow with time, so a young one means the old part of the table is behind us).
    last_id: int | None
    last_is_old: bool


async def delete_orphan_events(
    session: AsyncSession, retention: timedelta, after_id: int, limit: int
) -> OrphanWindow:
    """Look at the `limit` events after `after_id`; delete those older than the retention
    whose job no longer exists.

    Every event is written by the statement that writes its job, and retention deletes the
    two together, so orphans come only from jobs deleted by hand; the sweep finds those.
    """
    window = (
        select(events.c.id, events.c.job_id, events.c.at)
        .where(events.c.id > after_id)
        .order_by(events.c.id)
        .limit(limit)
        .cte("window")
    )
    job_gone = ~exists().where(jobs.c.job_id == window.c.job_id)
    doomed = select(window.c.id).where(window.c.at < cutoff(retention), job_gone)
    gone = (
        delete(events)
        .where(events.c.id == func.any(func.array(doomed.scalar_subquery())))
        .returning(events.c.id)
        .cte("gone")
    )
    last = select(window.c.id, window.c.at).order_by(window.c.id.desc()).limit(1).subquery()
    row = (
        await session.execute(
            select(
                select(func.count()).select_from(window).scalar_subquery(),
                select(func.count()).select_from(gone).scalar_subquery(),
                select(last.c.id).scalar_subquery(),
                select(last.c.at < cutoff(retention)).scalar_subquery(),
            )
        )
    ).one()
    return OrphanWindow(
        scanned=int(row[0]),
        deleted=int(row[1]),
        last_id=None if row[2] is None else int(row[2]),
        last_is_old=bool(row[3]),
    )
