"""enqueue_in_session() and enqueue_many_in_session(): create jobs in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.spec import JobCreate
from app.domain.views import JobCreated
from app.jobs.manager import JobManager
from app.jobs.validation import check_spec, check_specs
from app.settings import Settings, get_settings


async def enqueue_in_session(
    session: AsyncSession, spec: JobCreate, settings: Settings | None = None
) -> JobCreated:
    """Write the job's dl_jobs row, its first event and its pgqueuer dispatch in `session`.

    Nothing is committed here: the job exists exactly when the caller's transaction commits,
    and a worker is woken by pgqueuer's NOTIFY at that moment. With an idempotency_key that
    already exists, the existing job is returned whatever its state and nothing is written.
    """
    manager = JobManager.from_settings(settings or get_settings())
    return (await manager.create_many_in_session(session, [check_spec(spec)]))[0]


async def enqueue_many_in_session(
    session: AsyncSession, specs: Sequence[JobCreate], settings: Settings | None = None
) -> list[JobCreated]:
    """enqueue_in_session() for many jobs in one statement; results in input order.

    Every spec is checked before anything is written: one bad item rejects the whole call
    (InvalidJobError naming `jobs[i]`). Items sharing an idempotency_key, with each other or
    with an existing job, resolve to one job; only the first is reported as created.
    """
    manager = JobManager.from_settings(settings or get_settings())
    return await manager.create_many_in_session(session, check_specs(specs))
