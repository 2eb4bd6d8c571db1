"""JobService: trigger, status and cancel, each in a transaction the service owns."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repository
from app.db.dispatch import signal_cancel_in_session, withdraw_dispatch_in_session
from app.jobs.enqueue import enqueue_many_in_session
from app.jobs.errors import JobFinishedError, JobNotFoundError
from app.jobs.spec import JobSpec
from app.jobs.states import JobEvent
from app.jobs.trigger_batcher import TriggerBatcher
from app.jobs.views import EnqueueResult, JobView
from app.settings import Settings


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

    async def trigger(self, spec: JobSpec) -> EnqueueResult:
        """Create a job (or return the one with the same idempotency_key) once committed.

        Concurrent triggers share a transaction (group commit); see TriggerBatcher.
        """
        return await self.batcher.trigger(spec)

    async def trigger_many(self, specs: list[JobSpec]) -> list[EnqueueResult]:
        """Create many jobs in one transaction (all or none) and commit."""
        async with self.sessions() as session, session.begin():
            return await enqueue_many_in_session(session, specs, self.settings)

    async def status(self, job_id: uuid.UUID) -> JobView:
        """The job as stored now."""
        async with self.sessions() as session:
            job = await repository.get_job(session, job_id)
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found")
            return JobView.from_row(job)

    async def cancel(self, job_id: uuid.UUID) -> JobView:
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
            return JobView.from_row(job)

    async def database_ready(self) -> bool:
        """Whether the database answers a trivial query."""
        async with self.sessions() as session:
            return await repository.ping(session)
