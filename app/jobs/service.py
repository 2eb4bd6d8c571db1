"""JobService: trigger, look at, cancel and retry jobs, each in a transaction the service owns."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import job_queries, repository
from app.db.dispatch import (
    enqueue_dispatch_in_session,
    signal_cancel_in_session,
    withdraw_dispatch_in_session,
)
from app.domain.errors import (
    InvalidJobError,
    JobFinishedError,
    JobNotFoundError,
    JobNotRetryableError,
)
from app.domain.filters import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, JobCursor, JobFilter
from app.domain.spec import JobCreate
from app.domain.states import RETRYABLE_STATUSES, JobEvent
from app.domain.views import Job, JobCreated, JobHistory, JobHistoryEvent, JobPage
from app.jobs.enqueue import enqueue_many_in_session
from app.jobs.trigger_batcher import TriggerBatcher
from app.settings import Settings

EVENTS_LIMIT_MAX = 1000


@dataclass
class JobService:
    """The operations users perform on jobs."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    batcher: TriggerBatcher = field(init=False)

    def __post_init__(self) -> None:
        self.batcher = TriggerBatcher(self.sessions, self.settings)

    async def close(self) -> None:
        """Stop background work (the trigger batcher)."""
        await self.batcher.close()

    async def trigger(self, spec: JobCreate) -> JobCreated:
        """Create a job (or return the one with the same idempotency_key) once committed.

        Concurrent triggers share a transaction (group commit); see TriggerBatcher.
        """
        return await self.batcher.trigger(spec)

    async def trigger_many(self, specs: list[JobCreate]) -> list[JobCreated]:
        """Create many jobs in one transaction (all or none) and commit."""
        async with self.sessions() as session, session.begin():
            return await enqueue_many_in_session(session, specs, self.settings)

    async def status(self, job_id: uuid.UUID) -> Job:
        """The job as stored now (GET /jobs/{id} and /jobs/{id}/status)."""
        async with self.sessions() as session:
            job = await repository.get_job(session, job_id)
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found")
            return Job.from_row(job)

    async def cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel a queued job at once; ask a running one to stop at its next checkpoint."""
        schema = self.settings.pg_schema_queue
        async with self.sessions() as session, session.begin():
            running: tuple[int, int | None] | None = None
            queued = await repository.cancel_if_queued(session, job_id)
            if queued is not None:
                attempt, pgq_job_id = queued
                if pgq_job_id is not None:
                    await withdraw_dispatch_in_session(session, schema, pgq_job_id)
                await repository.add_event(session, job_id, JobEvent.CANCELED, attempt)
            else:
                running = await repository.request_cancel_if_running(session, job_id)
                if running is not None:
                    attempt, pgq_job_id = running
                    await repository.add_event(session, job_id, JobEvent.CANCEL_REQUESTED, attempt)
                    if pgq_job_id is not None:
                        await signal_cancel_in_session(session, schema, pgq_job_id)
            job = await repository.get_job(session, job_id)
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found")
            if queued is None and running is None:
                raise JobFinishedError(job.status)
            return Job.from_row(job)

    async def list_jobs(
        self, filters: JobFilter, *, cursor: str | None = None, limit: int = LIST_LIMIT_DEFAULT
    ) -> JobPage:
        """Jobs matching `filters`, newest first, `limit` at a time after `cursor`."""
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidJobError(f"limit must be 1..{LIST_LIMIT_MAX} (query parameter `limit`)")
        after = JobCursor.decode(cursor) if cursor else None
        async with self.sessions() as session:
            # One row more than asked tells whether another page exists.
            rows = await job_queries.list_jobs(session, filters, after=after, limit=limit + 1)
            page = [Job.from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = JobCursor(page[-1].created_at, page[-1].job_id).encode()
        return JobPage(jobs=page, next_cursor=next_cursor)

    async def events(
        self, job_id: uuid.UUID, *, after: int | None = None, limit: int = EVENTS_LIMIT_MAX
    ) -> JobHistory:
        """The job's history, oldest first, `limit` events at a time after event id `after`."""
        if not 1 <= limit <= EVENTS_LIMIT_MAX:
            raise InvalidJobError(f"limit must be 1..{EVENTS_LIMIT_MAX} (query parameter `limit`)")
        async with self.sessions() as session:
            if not await job_queries.job_exists(session, job_id):
                raise JobNotFoundError(f"job {job_id} not found")
            rows = await job_queries.list_events(session, job_id, after_id=after, limit=limit + 1)
            page = [JobHistoryEvent.from_row(row) for row in rows[:limit]]
        next_after = page[-1].id if len(rows) > limit else None
        return JobHistory(job_id=job_id, events=page, next_after=next_after)

    async def retry(self, job_id: uuid.UUID) -> Job:
        """Run a failed, lost or canceled job again: queued, a fresh dispatch, a new budget.

        The attempt counter is kept (a stale runner of an old attempt can never match a new
        one) and max_attempts becomes attempt + the job's original max_attempts, so the job
        gets its whole budget again. The original is the max_attempts the job had before
        its first retry (recorded in that `retried` event).
        """
        async with self.sessions() as session, session.begin():
            job = await job_queries.lock_for_retry(session, job_id)
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found")
            if job.status not in RETRYABLE_STATUSES:
                raise JobNotRetryableError(job.status)
            original = await job_queries.original_max_attempts(session, job_id)
            max_attempts = job.attempt + (job.max_attempts if original is None else original)
            pgq_job_id = await enqueue_dispatch_in_session(
                session,
                self.settings.pg_schema_queue,
                queue=job.queue,
                job_id=job_id,
                priority=job.priority,
                delay=timedelta(0),
            )
            row = await job_queries.requeue_for_retry(
                session,
                job_id,
                previous_status=job.status,
                max_attempts=max_attempts,
                pgq_job_id=pgq_job_id,
            )
            if row is None:  # cannot happen while the row lock is held
                raise JobNotRetryableError(job.status)
            details = {
                "previous_status": job.status,
                "max_attempts_before": job.max_attempts,
                "max_attempts": max_attempts,
            }
            await repository.add_event(session, job_id, JobEvent.RETRIED, row.attempt, details)
            return Job.from_row(row)

    async def database_ready(self) -> bool:
        """Whether the database answers a trivial query."""
        async with self.sessions() as session:
            return await repository.ping(session)
