"""SQL for looking at jobs (listing, history) and for retrying a finished one.

Listing is keyset-paged newest first on ix_dl_jobs_created (created_at DESC, job_id DESC):
a page costs the rows it reads, however deep it is, and needs no count.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Table,
    bindparam,
    exists,
    func,
    literal,
    null,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJob, DlJobEvent
from app.domain.filters import JobCursor, JobFilter
from app.domain.states import JobEvent, JobStatus

jobs = cast(Table, DlJob.__table__)
events = cast(Table, DlJobEvent.__table__)


def _conditions(filters: JobFilter) -> list[ColumnElement[bool]]:
    """The WHERE clause of a listing, one condition per filter given."""
    conditions: list[ColumnElement[bool]] = []
    if filters.statuses:
        # Statuses are inlined (they are enum members): with bind parameters a cached
        # generic plan could not prove the partial indexes on live statuses usable.
        conditions.append(
            jobs.c.status.in_(
                bindparam(
                    "statuses",
                    [s.value for s in filters.statuses],
                    expanding=True,
                    literal_execute=True,
                )
            )
        )
        if all(status.is_final for status in filters.statuses):
            # Implied (every final transition sets finished_at, a retry clears it): it lets
            # the planner use the partial ix_dl_jobs_status_finished for rare statuses.
            conditions.append(jobs.c.finished_at.is_not(None))
    for name in ("queue", "task", "lock_key", "partition_key", "producer", "consumer_group"):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(jobs.c[name] == value)
    if filters.created_after is not None:
        conditions.append(jobs.c.created_at >= filters.created_after)
    if filters.created_before is not None:
        conditions.append(jobs.c.created_at < filters.created_before)
    if filters.finished_after is not None:
        conditions.append(jobs.c.finished_at >= filters.finished_after)
    if filters.finished_before is not None:
        conditions.append(jobs.c.finished_at < filters.finished_before)
        # Implied (a job finishes after it was created), and it lets the newest-first scan
        # start at the range instead of walking every job created since.
        conditions.append(jobs.c.created_at < filters.finished_before)
    return conditions


def list_jobs_statement(
    filters: JobFilter, *, after: JobCursor | None, limit: int
) -> Select[DlJob]:
    """The listing query: jobs matching `filters`, newest first, strictly after `after`."""
    statement = select(DlJob).where(*_conditions(filters))
    if after is not None:
        statement = statement.where(
            tuple_(jobs.c.created_at, jobs.c.job_id)
            < tuple_(
                literal(after.created_at, jobs.c.created_at.type),
                literal(after.job_id, jobs.c.job_id.type),
            )
        )
    return statement.order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc()).limit(limit)


async def list_jobs(
    session: AsyncSession, filters: JobFilter, *, after: JobCursor | None, limit: int
) -> Sequence[DlJob]:
    """Up to `limit` jobs matching `filters`, newest first, strictly after `after`."""
    return (await session.scalars(list_jobs_statement(filters, after=after, limit=limit))).all()


async def job_exists(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Whether a job has this id."""
    return bool(await session.scalar(select(exists().where(jobs.c.job_id == job_id))))


async def list_events(
    session: AsyncSession, job_id: uuid.UUID, *, after_id: int | None, limit: int
) -> Sequence[DlJobEvent]:
    """Up to `limit` of the job's events, oldest first, with ids above `after_id`."""
    statement = select(DlJobEvent).where(events.c.job_id == job_id)
    if after_id is not None:
        statement = statement.where(events.c.id > after_id)
    statement = statement.order_by(events.c.id).limit(limit)
    return (await session.scalars(statement)).all()


@dataclass(frozen=True)
class RetryCandidate:
    """A job locked for a retry, with what deciding and dispatching it needs."""

    status: str
    attempt: int
    max_attempts: int
    queue: str
    priority: int


async def lock_for_retry(session: AsyncSession, job_id: uuid.UUID) -> RetryCandidate | None:
    """Lock the job's row until the transaction ends; None when there is no such job.

    A concurrent retry (or any other writer) waits here, then sees the row as committed.
    """
    row = (
        await session.execute(
            select(
                jobs.c.status, jobs.c.attempt, jobs.c.max_attempts, jobs.c.queue, jobs.c.priority
            )
            .where(jobs.c.job_id == job_id)
            .with_for_update()
        )
    ).first()
    return None if row is None else RetryCandidate(**row._asdict())


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


async def requeue_for_retry(
    session: AsyncSession,
    job_id: uuid.UUID,
    *,
    previous_status: str,
    max_attempts: int,
    pgq_job_id: int,
) -> DlJob | None:
    """`previous_status` -> queued under dispatch `pgq_job_id`; None if the status moved.

    `attempt` is kept, so no attempt number is ever used twice (fencing relies on it).
    """
    statement = (
        update(DlJob)
        .where(jobs.c.job_id == job_id, jobs.c.status == previous_status)
        .values(
            status=JobStatus.QUEUED,
            max_attempts=max_attempts,
            pgq_job_id=pgq_job_id,
            available_at=func.now(),
            error=None,
            progress=null(),  # SQL NULL; None would store JSON null
            finished_at=None,
            lease_expires_at=None,
            heartbeat_at=None,
            cancel_requested=False,
            updated_at=func.now(),
        )
        .returning(DlJob)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).first()
