"""All SQL about dl_jobs and dl_job_events. Functions flush, never commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJob, DlJobEvent
from app.jobs.states import JobStatus

jobs = cast(Table, DlJob.__table__)
events = cast(Table, DlJobEvent.__table__)


async def insert_job(
    session: AsyncSession, values: dict[str, Any]
) -> tuple[uuid.UUID, datetime, datetime] | None:
    """Insert a job unless its idempotency_key exists; returns (id, available_at, db now).

    ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to commit or roll
    back, so N racing triggers make exactly one row.
    """
    statement = (
        pg_insert(jobs)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[jobs.c.idempotency_key])
        .returning(jobs.c.job_id, jobs.c.available_at, func.now())
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1], row[2])


async def find_by_idempotency_key(session: AsyncSession, key: str) -> DlJob | None:
    """The job created with this idempotency key, if any."""
    result = await session.execute(select(DlJob).where(DlJob.idempotency_key == key))
    return result.scalar_one_or_none()


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> DlJob | None:
    """The job with this id, if any."""
    return await session.get(DlJob, job_id, populate_existing=True)


async def link_dispatch(session: AsyncSession, job_id: uuid.UUID, pgq_job_id: int) -> None:
    """Record which pgqueuer row dispatches the job."""
    await session.execute(update(jobs).where(jobs.c.job_id == job_id).values(pgq_job_id=pgq_job_id))


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


async def cancel_if_queued(
    session: AsyncSession, job_id: uuid.UUID
) -> tuple[int, int | None] | None:
    """Move a queued job to canceled; returns (attempt, pgq_job_id) or None if not queued.

    The row lock orders this against a worker's start: whichever commits first wins.
    """
    statement = (
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.CANCELED,
            cancel_requested=True,
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(jobs.c.attempt, jobs.c.pgq_job_id)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1])


async def request_cancel_if_running(
    session: AsyncSession, job_id: uuid.UUID
) -> tuple[int, int | None] | None:
    """Flag a running job for cooperative cancel; returns (attempt, pgq_job_id) or None."""
    statement = (
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.status == JobStatus.RUNNING)
        .values(cancel_requested=True, updated_at=func.now())
        .returning(jobs.c.attempt, jobs.c.pgq_job_id)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1])


async def ping(session: AsyncSession) -> bool:
    """Whether the database answers a trivial query."""
    return bool((await session.execute(select(literal(1)))).scalar_one() == 1)
