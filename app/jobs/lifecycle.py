"""Transitions that move a job back to queued with a fresh pgqueuer dispatch."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import attempts, repository
from app.db.dispatch import enqueue_dispatch_in_session
from app.db.models import DlJob
from app.jobs.states import JobEvent, JobStatus


async def requeue_in_session(
    session: AsyncSession,
    schema: str,
    job_id: uuid.UUID,
    attempt: int,
    event: JobEvent,
    *,
    delay_sec: float,
    count_attempt: bool,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """running -> queued (fenced by attempt) plus a new dispatch; False when fenced out.

    When a cancel was requested meanwhile, the job ends canceled instead of running again.
    """
    requeued = await attempts.requeue_attempt_in_session(
        session,
        job_id,
        attempt,
        event,
        delay_sec=delay_sec,
        count_attempt=count_attempt,
        error=error,
        details=details,
    )
    if requeued is None:
        return await attempts.finish_canceled_in_session(
            session,
            job_id,
            attempt,
            error=error,
            details={**(details or {}), "instead_of": event.value},
        )
    pgq_job_id = await enqueue_dispatch_in_session(
        session,
        schema,
        queue=requeued.queue,
        job_id=job_id,
        priority=requeued.priority,
        delay=timedelta(seconds=delay_sec),
    )
    await attempts.set_dispatch(session, job_id, pgq_job_id)
    return True


async def postpone_in_session(
    session: AsyncSession,
    schema: str,
    job_id: uuid.UUID,
    pgq_job_id: int,
    *,
    delay_sec: float,
    lock_key: str,
) -> bool:
    """A queued job whose lock_key is busy waits `delay_sec` under a new dispatch.

    Conditioned on the dispatch that tried, so a concurrent cancel or redispatch wins.
    """
    result = await session.execute(
        update(DlJob)
        .where(
            DlJob.job_id == job_id,
            DlJob.status == JobStatus.QUEUED,
            DlJob.pgq_job_id == pgq_job_id,
        )
        .values(available_at=func.now() + delay_sec * attempts.ONE_SECOND)
        .returning(DlJob.queue, DlJob.priority, DlJob.attempt)
    )
    row = result.first()
    if row is None:
        return False
    new_dispatch = await enqueue_dispatch_in_session(
        session,
        schema,
        queue=row.queue,
        job_id=job_id,
        priority=row.priority,
        delay=timedelta(seconds=delay_sec),
    )
    await attempts.set_dispatch(session, job_id, new_dispatch)
    await repository.add_event(
        session,
        job_id,
        JobEvent.LOCK_BUSY,
        row.attempt,
        {"lock_key": lock_key, "retry_in_sec": delay_sec},
    )
    return True


async def redispatch_in_session(
    session: AsyncSession,
    schema: str,
    job_id: uuid.UUID,
    queue: str,
    priority: int,
    delay: timedelta,
) -> None:
    """Give a queued job that lost its dispatch a new one."""
    pgq_job_id = await enqueue_dispatch_in_session(
        session, schema, queue=queue, job_id=job_id, priority=priority, delay=delay
    )
    await attempts.set_dispatch(session, job_id, pgq_job_id)
    await repository.add_event(session, job_id, JobEvent.REDISPATCHED, 0)
