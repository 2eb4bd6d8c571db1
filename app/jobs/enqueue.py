"""enqueue_in_session() and enqueue_many_in_session(): create jobs in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repository
from app.db.job_inserts import NewJob, insert_jobs_in_session
from app.domain.spec import JobCreate
from app.domain.states import JobStatus
from app.domain.views import JobCreated
from app.jobs.validation import check_spec
from app.settings import Settings, get_settings


async def enqueue_in_session(
    session: AsyncSession, spec: JobCreate, settings: Settings | None = None
) -> JobCreated:
    """Write the job's dl_jobs row, its first event and its pgqueuer dispatch in `session`.

    Nothing is committed here: the job exists exactly when the caller's transaction commits,
    and a worker is woken by pgqueuer's NOTIFY at that moment. With an idempotency_key that
    already exists, the existing job is returned whatever its state and nothing is written.
    """
    return (await _enqueue(session, [spec], settings, name_items=False))[0]


async def enqueue_many_in_session(
    session: AsyncSession, specs: Sequence[JobCreate], settings: Settings | None = None
) -> list[JobCreated]:
    """enqueue_in_session() for many jobs in one statement; results in input order.

    Every spec is checked before anything is written: one bad item rejects the whole call
    (InvalidJobError naming `jobs[i]`). Items sharing an idempotency_key, with each other or
    with an existing job, resolve to one job; only the first is reported as created.
    """
    return await _enqueue(session, specs, settings, name_items=True)


async def _enqueue(
    session: AsyncSession,
    specs: Sequence[JobCreate],
    settings: Settings | None,
    *,
    name_items: bool,
) -> list[JobCreated]:
    checked = [
        check_spec(spec, f"jobs[{index}]: " if name_items else "")
        for index, spec in enumerate(specs)
    ]
    return await enqueue_checked_in_session(session, checked, settings)


async def enqueue_checked_in_session(
    session: AsyncSession, checked: Sequence[JobCreate], settings: Settings | None = None
) -> list[JobCreated]:
    """enqueue_many_in_session() for specs that already passed check_spec()."""
    settings = settings or get_settings()
    if not checked:
        return []
    new_jobs = [_new_job(spec, settings) for spec in checked]
    outcomes = await insert_jobs_in_session(session, settings.pg_schema_queue, new_jobs)
    skipped_keys = [
        job.idempotency_key
        for job, outcome in zip(new_jobs, outcomes, strict=True)
        if not outcome.created and job.idempotency_key is not None
    ]
    # The session sees its own inserts and every committed job that won a key race.
    existing = await repository.find_by_idempotency_keys(session, skipped_keys)
    results = []
    for job, outcome in zip(new_jobs, outcomes, strict=True):
        if outcome.created:
            results.append(JobCreated(job_id=job.job_id, status=JobStatus.QUEUED, created=True))
            continue
        assert job.idempotency_key is not None  # only the key can conflict
        job_id, status = existing[job.idempotency_key]
        results.append(JobCreated(job_id=job_id, status=status, created=False))
    return results


def _new_job(spec: JobCreate, settings: Settings) -> NewJob:
    """The dl_jobs columns for a new job."""
    return NewJob(
        job_id=uuid.uuid4(),
        queue=spec.queue,
        task=spec.task,
        args=spec.args,
        idempotency_key=spec.idempotency_key,
        lock_key=spec.lock_key,
        partition_key=spec.partition_key,
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        lease_ttl_sec=spec.lease_ttl_sec or settings.dl_default_lease_ttl_sec,
        producer=spec.producer,
        consumer_group=spec.consumer_group,
        available_at=spec.available_at,
    )
