"""All SQL about dl_jobs and dl_job_events. Functions flush, never commit."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJob, DlJobEvent
from app.domain.states import JobStatus

jobs = cast(Table, DlJob.__table__)
events = cast(Table, DlJobEvent.__table__)


async def find_by_idempotency_keys(
    session: AsyncSession, keys: list[str]
) -> dict[str, tuple[uuid.UUID, str]]:
    """(job_id, status) of the jobs created with these idempotency keys."""
    if not keys:
        return {}
    rows = await session.execute(
        select(jobs.c.idempotency_key, jobs.c.job_id, jobs.c.status).where(
            jobs.c.idempotency_key.in_(keys)
        )
    )
    return {row[0]: (row[1], row[2]) for row in rows}


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
