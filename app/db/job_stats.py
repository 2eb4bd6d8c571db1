"""Aggregates over dl_jobs: per-queue live counts and recent finishes (queues view, /metrics).

Statuses are spelled inline: partial indexes are only matched against constants, never
against bound parameters (a generic plan of a prepared statement would miss them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJob
from app.db.sql_common import inline_constant
from app.domain.states import FINAL_STATUSES, JobStatus

jobs = cast(Table, DlJob.__table__)
THROUGHPUT_MINUTES = 60
_HOUR: ColumnElement[Any] = literal_column("interval '1 hour'")


_QUEUED = inline_constant(JobStatus.QUEUED.value)
_RUNNING = inline_constant(JobStatus.RUNNING.value)
_FINAL = [inline_constant(status.value) for status in sorted(FINAL_STATUSES)]


@dataclass(frozen=True)
class LiveCounts:
    """Queued and running jobs of one queue, and when its oldest due job became due."""

    queue: str
    queued: int
    running: int
    oldest_due_at: datetime | None
    # Seconds since then, by the database clock.
    oldest_due_age_sec: float | None


@dataclass(frozen=True)
class FinishedCount:
    """Jobs of one queue that ended with `status` within one minute (`minute`, its start)."""

    queue: str
    status: str
    minute: datetime
    count: int


async def live_counts(session: AsyncSession, queue: str | None = None) -> list[LiveCounts]:
    """Queued and running jobs per queue, from the live-status partial index alone."""
    is_queued = jobs.c.status == _QUEUED
    due = jobs.c.available_at <= func.now()
    statement = (
        select(
            jobs.c.queue,
            func.count().filter(is_queued).label("queued"),
            func.count().filter(jobs.c.status == _RUNNING).label("running"),
            func.min(jobs.c.available_at).filter(is_queued, due).label("oldest_due_at"),
            func.extract(
                "epoch",
                func.now() - func.min(jobs.c.available_at).filter(is_queued, due),
            ).label("oldest_due_age_sec"),
        )
        .where(jobs.c.status.in_([_QUEUED, _RUNNING]))
        .group_by(jobs.c.queue)
    )
    if queue is not None:
        statement = statement.where(jobs.c.queue == queue)
    return [
        LiveCounts(
            queue=row.queue,
            queued=row.queued,
            running=row.running,
            oldest_due_at=row.oldest_due_at,
            oldest_due_age_sec=None
            if row.oldest_due_age_sec is None
            else max(0.0, float(row.oldest_due_age_sec)),
        )
        for row in await session.execute(statement)
    ]


async def finished_last_hour(
    session: AsyncSession, queue: str | None = None
) -> list[FinishedCount]:
    """Jobs that ended in the last hour, per queue, final status and minute.

    Reads only the last hour of the (status, finished_at) index, whatever the history's size.
    """
    minute = func.date_trunc("minute", jobs.c.finished_at)
    statement = (
        select(
            jobs.c.queue,
            jobs.c.status,
            minute.label("minute"),
            func.count().label("count"),
        )
        .where(jobs.c.status.in_(_FINAL), jobs.c.finished_at >= func.now() - _HOUR)
        .group_by(jobs.c.queue, jobs.c.status, minute)
    )
    if queue is not None:
        statement = statement.where(jobs.c.queue == queue)
    return [FinishedCount(**row._asdict()) for row in await session.execute(statement)]


async def db_now(session: AsyncSession) -> datetime:
    """The database clock at the start of the transaction (`now()`)."""
    value: datetime = (await session.execute(select(func.now()))).scalar_one()
    return value
