"""SQL for one attempt's transitions. Every write after the start is fenced by attempt.

Each transition writes its dl_jobs change and its dl_job_events row in one statement
(a data-modifying CTE), so history and state never disagree and it costs one round trip.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Update,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db.models import DlJob, DlJobEvent
from app.domain.attempts import QueuedJob, StartedAttempt
from app.domain.states import JobEvent, JobStatus

jobs = cast(Table, DlJob.__table__)
events = cast(Table, DlJobEvent.__table__)
ONE_SECOND: ColumnElement[Any] = literal_column("interval '1 second'")


ATTEMPT_COLUMNS = tuple(
    jobs.c[name]
    for name in (
        "job_id",
        "queue",
        "task",
        "args",
        "lock_key",
        "priority",
        "attempt",
        "max_attempts",
        "lease_ttl_sec",
    )
)


def _with_event(
    change: Update, event: JobEvent, details: dict[str, Any] | None = None
) -> Select[Any]:
    """Run `change` (which must return job_id and attempt) and log `event` for each row."""
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


def _fenced(job_id: uuid.UUID, attempt: int) -> Update:
    """An update that only touches the job while this attempt is the running one."""
    return update(jobs).where(
        jobs.c.job_id == job_id,
        jobs.c.attempt == attempt,
        jobs.c.status == JobStatus.RUNNING,
    )


async def heartbeat(
    connection: AsyncConnection,
    job_id: uuid.UUID,
    attempt: int,
    progress: dict[str, Any] | None,
) -> bool | None:
    """Extend the lease and save progress; returns cancel_requested, or None when fenced out."""
    values: dict[str, Any] = {
        "heartbeat_at": func.now(),
        "lease_expires_at": func.now() + jobs.c.lease_ttl_sec * ONE_SECOND,
    }
    if progress is not None:
        values["progress"] = type_coerce(progress, JSONB)
    row = (
        await connection.execute(
            _fenced(job_id, attempt).values(**values).returning(jobs.c.cancel_requested)
        )
    ).first()
    return None if row is None else bool(row[0])


async def finish_attempt(
    connection: AsyncConnection,
    job_id: uuid.UUID,
    attempt: int,
    status: JobStatus,
    event: JobEvent,
    *,
    progress: dict[str, Any] | None = None,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """running -> a final status, fenced; returns whether this attempt still owned the job."""
    values: dict[str, Any] = {
        "status": status,
        "finished_at": func.now(),
        "lease_expires_at": None,
        "updated_at": func.now(),
        "error": error,
    }
    if progress is not None:
        values["progress"] = type_coerce(progress, JSONB)
    change = _fenced(job_id, attempt).values(**values).returning(jobs.c.job_id, jobs.c.attempt)
    return (await connection.execute(_with_event(change, event, details))).first() is not None


async def requeue_attempt_in_session(
    session: AsyncSession,
    job_id: uuid.UUID,
    attempt: int,
    event: JobEvent,
    *,
    delay_sec: float,
    count_attempt: bool,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> StartedAttempt | None:
    """running -> queued after `delay_sec`, fenced; the caller adds the new dispatch.

    With count_attempt False the attempt is given back (lock busy, shutdown).
    A job whose cancel was requested is not requeued (None): see finish_canceled_in_session.
    """
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED,
        "available_at": func.now() + literal(delay_sec) * ONE_SECOND,
        "lease_expires_at": None,
        "updated_at": func.now(),
    }
    if not count_attempt:
        values["attempt"] = jobs.c.attempt - 1
    if error is not None:
        values["error"] = error
    change = (
        _fenced(job_id, attempt)
        .where(jobs.c.cancel_requested.is_(False))
        .values(**values)
        .returning(*ATTEMPT_COLUMNS)
    )
    row = (await session.execute(_with_event(change, event, details))).first()
    return None if row is None else StartedAttempt(**row._asdict())


async def finish_canceled_in_session(
    session: AsyncSession,
    job_id: uuid.UUID,
    attempt: int,
    *,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """running -> canceled, fenced, for an attempt that stopped after a cancel was requested.

    A job that would go back to queued (retry, expired lease, shutdown) while its cancel
    flag is set ends here instead: queued with the flag set, it could never start again.
    """
    values: dict[str, Any] = {
        "status": JobStatus.CANCELED,
        "finished_at": func.now(),
        "lease_expires_at": None,
        "updated_at": func.now(),
    }
    if error is not None:
        values["error"] = error
    change = (
        _fenced(job_id, attempt)
        .where(jobs.c.cancel_requested.is_(True))
        .values(**values)
        .returning(jobs.c.job_id, jobs.c.attempt)
    )
    row = (await session.execute(_with_event(change, JobEvent.CANCELED, details))).first()
    return row is not None


async def postpone_queued(
    session: AsyncSession, job_id: uuid.UUID, pgq_job_id: int, delay_sec: float
) -> QueuedJob | None:
    """Push a queued job's available_at out, only while `pgq_job_id` is its dispatch."""
    row = (
        await session.execute(
            update(jobs)
            .where(
                jobs.c.job_id == job_id,
                jobs.c.status == JobStatus.QUEUED,
                jobs.c.pgq_job_id == pgq_job_id,
            )
            .values(available_at=func.now() + literal(delay_sec) * ONE_SECOND)
            .returning(jobs.c.queue, jobs.c.priority, jobs.c.attempt)
        )
    ).first()
    return None if row is None else QueuedJob(**row._asdict())
