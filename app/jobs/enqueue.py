"""enqueue_in_session(), enqueue_many_in_session(), enqueue_batch_in_session() and
enqueue_workflow_in_session(): create jobs (a batch, or a workflow of them) in the caller's
transaction.

A process that loaded no pipelines (an application that only enqueues) checks task names
against the tasks live workers registered (dl_workers), read in the caller's transaction;
the worker checks the args when it runs the job.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.spec import JobCreate
from app.domain.views import JobCreated
from app.domain.workflows import WorkflowCreate, WorkflowCreated, WorkflowKey
from app.jobs.batches import BatchCreated, check_callback, create_batch_in_session
from app.jobs.manager import JobManager
from app.jobs.validation import check_spec, check_specs, check_workflow
from app.jobs.worker_registry import live_tasks_in_session
from app.pipelines.registry import registered_names
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
    settings = settings or get_settings()
    manager = JobManager.from_settings(settings)
    live = await _live_tasks_unless_loaded(session, settings)
    checked = check_spec(spec, internal=internal, live_tasks=live)
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
    settings = settings or get_settings()
    manager = JobManager.from_settings(settings)
    live = await _live_tasks_unless_loaded(session, settings)
    checked = check_specs(specs, internal=internal, live_tasks=live)
    return await manager.create_many_in_session(session, checked)


async def enqueue_batch_in_session(
    session: AsyncSession,
    specs: Sequence[JobCreate],
    on_complete: JobCreate,
    settings: Settings | None = None,
) -> BatchCreated:
    """enqueue_many_in_session() as one batch: when every job it created has reached a
    final status, `on_complete` is created once, with the counts in its args under
    `batch` (docs/batches.md). Checks and errors as enqueue_many_in_session(); a bad
    callback names `on_complete`.
    """
    settings = settings or get_settings()
    manager = JobManager.from_settings(settings)
    live = await _live_tasks_unless_loaded(session, settings)
    checked = check_specs(specs, live_tasks=live)
    callback = check_callback(on_complete, live_tasks=live)
    return await create_batch_in_session(session, manager, checked, callback)


async def enqueue_workflow_in_session(
    session: AsyncSession, spec: WorkflowCreate, settings: Settings | None = None
) -> WorkflowCreated:
    """Write a workflow and all its steps in `session` (docs/workflows.md); nothing is
    committed here.

    The steps exist exactly when the caller's transaction commits: the roots queued (a
    worker is woken at that moment), the others waiting for their parents. A bad DAG (a
    cycle, an unknown step, a duplicate name) or a bad step is an InvalidJobError naming
    it, raised before anything is written; a parent job outside the workflow that does not
    exist is one too, raised after the workflow's row was written: roll the transaction back.
    With `spec.idempotency_key`, the same request again finds the workflow it made
    (`created` false) and a different one is a WorkflowKeyConflictError.
    """
    settings = settings or get_settings()
    manager = JobManager.from_settings(settings)
    live = await _live_tasks_unless_loaded(session, settings)
    steps = check_workflow(spec, live_tasks=live)
    return await manager.create_workflow_in_session(session, spec.name, steps, WorkflowKey.of(spec))


async def _live_tasks_unless_loaded(session: AsyncSession, settings: Settings) -> set[str] | None:
    """The tasks live workers registered, when this process loaded no pipelines of its own."""
    if registered_names():
        return None
    return await live_tasks_in_session(session, settings)
