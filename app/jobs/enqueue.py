"""enqueue_in_session(): create a job inside the caller's SQLAlchemy transaction."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repository
from app.db.dispatch import enqueue_dispatch_in_session
from app.jobs.errors import UnknownTaskError
from app.jobs.spec import JobSpec, validated
from app.jobs.states import JobEvent, JobStatus
from app.jobs.views import EnqueueResult
from app.pipelines.registry import is_registered, registered_names
from app.settings import Settings, get_settings


async def enqueue_in_session(
    session: AsyncSession, spec: JobSpec, settings: Settings | None = None
) -> EnqueueResult:
    """Write the job's dl_jobs row, its first event and its pgqueuer dispatch in `session`.

    Nothing is committed here: the job exists exactly when the caller's transaction commits,
    and a worker is woken by pgqueuer's NOTIFY at that moment. With an idempotency_key that
    already exists, the existing job is returned whatever its state and nothing is written.
    """
    settings = settings or get_settings()
    spec = validated(spec)
    if not is_registered(spec.task):
        known = ", ".join(registered_names())
        raise UnknownTaskError(f"unknown task {spec.task!r} (registered: {known})")
    # The row is written first: it opens the database transaction that pgqueuer joins.
    inserted = await repository.insert_job(session, _row_values(spec, settings))
    if inserted is None:
        assert spec.idempotency_key is not None  # only the key can conflict
        existing = await repository.find_by_idempotency_key(session, spec.idempotency_key)
        assert existing is not None  # the conflicting row is committed and visible
        return EnqueueResult(job_id=existing.job_id, status=existing.status, created=False)
    job_id, available_at, db_now = inserted
    pgq_job_id = await enqueue_dispatch_in_session(
        session,
        settings.pg_schema_queue,
        queue=spec.queue,
        job_id=job_id,
        priority=spec.priority,
        delay=max(available_at - db_now, timedelta(0)),
    )
    await repository.link_dispatch(session, job_id, pgq_job_id)
    await repository.add_event(
        session, job_id, JobEvent.QUEUED, 0, {"queue": spec.queue, "task": spec.task}
    )
    return EnqueueResult(job_id=job_id, status=JobStatus.QUEUED, created=True)


def _row_values(spec: JobSpec, settings: Settings) -> dict[str, object]:
    """The dl_jobs columns for a new job."""
    values: dict[str, object] = {
        "job_id": uuid.uuid4(),
        "queue": spec.queue,
        "task": spec.task,
        "args": spec.args,
        "idempotency_key": spec.idempotency_key,
        "lock_key": spec.lock_key,
        "partition_key": spec.partition_key,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "lease_ttl_sec": spec.lease_ttl_sec or settings.dl_default_lease_ttl_sec,
        "producer": spec.producer,
        "consumer_group": spec.consumer_group,
        "status": JobStatus.QUEUED,
    }
    if spec.available_at is not None:
        values["available_at"] = spec.available_at
    return values
