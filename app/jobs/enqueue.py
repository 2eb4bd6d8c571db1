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
    session: AsyncSession,
    spec: JobCreate,
    settings: Settings | None = None,
    *,
    internal: bool = False,
) -> JobCreated:
    """Write the job's dl_jobs row, its first event and its pgqueuer dispatch in `session`.

    Nothing is committed here: the job exists exactly when the caller's transaction commits,
    and a worker is woken by pgqueuer's NOTIFY at that moment. With an idempotency_key that
    already exists and the same request, the existing job is returned whatever its state
    and nothing is written; with a different request, IdempotencyConflictError (nothing
    written). Values starting with `dl:` in idempotency_key or producer are the service's
    own: InvalidJobError unless `internal` (schedules pass it).
    """
    manager = JobManager.from_settings(settings or get_settings())
    checked = check_spec(spec, internal=internal)
    return (await manager.create_many_in_session(session, [checked], name_items=False))[0]


async def enqueue_many_in_session(
    session: AsyncSession,
    specs: Sequence[JobCreate],
    settings: Settings | None = None,
    *,
    internal: bool = False,
) -> list[JobCreated]:
    """enqueue_in_session() for many jobs in one statement; results in input order.

    Every spec is checked before anything is written: one bad item rejects the whole call
    (InvalidJobError naming `jobs[i]`). Items sharing an idempotency_key and the same
    request, with each other or with an existing job, resolve to one job; only the first is
    reported as created. An item whose key belongs to a different request raises
    IdempotencyConflictError naming it (and the earlier item, if the key is this call's);
    other items may have been written by then, so roll the transaction back.
    """
    manager = JobManager.from_settings(settings or get_settings())
    return await manager.create_many_in_session(session, check_specs(specs, internal=internal))
