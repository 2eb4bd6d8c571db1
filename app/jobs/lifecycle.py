"""Transitions that move a job back to queued with a fresh pgqueuer dispatch."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import attempts, repository
from app.db.dispatch import enqueue_dispatch_in_session
from app.domain.states import JobEvent


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
    await _new_dispatch_in_session(
        session, schema, job_id, requeued.queue, requeued.priority, timedelta(seconds=delay_sec)
    )
    return True


async def postpone_in_session(
    session: AsyncSession,
    schema: str,
    job_id: uuid.UUID,
    pgq_job_id: int,
    *,
    delay_sec: float,
    lock_key: str,
    worker_id: str,
    queue_paused: bool = False,
) -> bool:
    """A queued job that could not start waits under a new dispatch; no attempt is counted.

    Its lock_key was busy: it waits `delay_sec` (event lock_busy). Its queue was paused
    (`queue_paused`, a dispatch picked as the pause committed): the new dispatch is parked
    until the resume (event queue_paused; pass delay_sec 0 to run at once on resume).
    Conditioned on the dispatch that tried, so a concurrent cancel or redispatch wins.
    The event names `worker_id`, the worker that could not start the job.
    """
    row = await attempts.postpone_queued(session, job_id, pgq_job_id, delay_sec)
    if row is None:
        return False
    await _new_dispatch_in_session(
        session, schema, job_id, row.queue, row.priority, timedelta(seconds=delay_sec)
    )
    if queue_paused:
        event = JobEvent.QUEUE_PAUSED
        details: dict[str, Any] = {"queue": row.queue, "worker_id": worker_id}
    else:
        event = JobEvent.LOCK_BUSY
        details = {"lock_key": lock_key, "retry_in_sec": delay_sec, "worker_id": worker_id}
    await repository.add_event(session, job_id, event, row.attempt, details)
    return True


async def redispatch_in_session(
    session: AsyncSession,
    schema: str,
    job_id: uuid.UUID,
    queue: str,
    priority: int,
    delay: timedelta,
    details: dict[str, Any] | None = None,
) -> None:
    """Give a queued job that lost its dispatch a new one."""
    await _new_dispatch_in_session(session, schema, job_id, queue, priority, delay)
    await repository.add_event(session, job_id, JobEvent.REDISPATCHED, 0, details)


async def _new_dispatch_in_session(
    session: AsyncSession,
    schema: str,
    job_id: uuid.UUID,
    queue: str,
    priority: int,
    delay: timedelta,
) -> None:
    """Enqueue a pgqueuer row for the job and make it the only one that may start it."""
    pgq_job_id = await enqueue_dispatch_in_session(
        session, schema, queue=queue, job_id=job_id, priority=priority, delay=delay
    )
    await repository.link_dispatch(session, job_id, pgq_job_id)
