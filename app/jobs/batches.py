"""Batches: a bulk trigger's jobs with a completion callback, created in the caller's
transaction, and the batch's state (app.db.batch_functions completes it).

The callback is checked like any trigger when the batch is created, as the task will get
it (its args with `batch` filled in), so creating it later cannot fail on its fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence, Set
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import batches
from app.domain.batches import BATCH_ARG, BatchCounts, BatchView
from app.domain.errors import InvalidJobError
from app.domain.spec import JobCreate
from app.domain.views import JobCreated
from app.jobs.manager import JobManager
from app.jobs.validation import check_spec

WHERE = "on_complete: "
# What a callback cannot carry: it is created when the batch completes, once.
_NOT_FOR_CALLBACKS = {
    "idempotency_key": "a batch creates its callback once already",
    "available_at": "it is created when the batch completes",
    "coalescing": "it is created once per batch",
    "depends_on": "it waits for the batch's jobs already",
}
# The callback's fields dl_batch_complete() passes to dl_enqueue(), besides its args.
_STORED = (
    "queue",
    "task",
    "lock_key",
    "partition_key",
    "producer",
    "consumer_group",
    "concurrency_key",
    "rate_key",
    "priority",
    "max_attempts",
    "lease_ttl_sec",
    "concurrency_limit",
)


class BatchCreated(msgspec.Struct, kw_only=True):
    """The batch and one answer per requested job, in request order."""

    batch_id: uuid.UUID
    jobs: list[JobCreated]


def check_callback(spec: JobCreate, *, live_tasks: Set[str] | None = None) -> JobCreate:
    """The checked callback, or InvalidJobError naming `on_complete.<field>`."""
    for field, why in _NOT_FOR_CALLBACKS.items():
        if getattr(spec, field) not in (None, False):
            raise InvalidJobError(f"{WHERE}{field} is not allowed for a callback: {why}")
    if BATCH_ARG in spec.args:
        raise InvalidJobError(
            f"{WHERE}args.{BATCH_ARG} is filled in by the service with the batch's counts"
        )
    sample = {"batch_id": str(uuid.UUID(int=0)), "total": 0}
    sample.update(msgspec.to_builtins(BatchCounts()))
    as_run = msgspec.structs.replace(spec, args={**spec.args, BATCH_ARG: sample})
    checked = check_spec(as_run, WHERE, live_tasks=live_tasks)
    return msgspec.structs.replace(checked, args=spec.args)


def stored_callback(spec: JobCreate) -> dict[str, Any]:
    """The callback as dl_batches.callback keeps it: every field resolved."""
    fields: dict[str, Any] = msgspec.to_builtins(spec)
    return {name: fields.get(name) for name in (*_STORED, "args")}


async def create_batch_in_session(
    session: AsyncSession,
    manager: JobManager,
    specs: Sequence[JobCreate],
    on_complete: JobCreate,
    details: Sequence[Mapping[str, Any]] | None = None,
) -> BatchCreated:
    """The jobs and their batch, in the caller's transaction; `specs` and `on_complete`
    already checked.

    Items that find an existing job by idempotency_key are not part of the new batch.
    When none is created and the jobs found belong to one batch, that is a resend of the
    call that made it: its batch is the answer, and no second batch (nor callback) is made.
    A batch of no job completes at once.
    """
    batch_id = uuid.uuid4()
    jobs = await manager.create_many_in_session(session, specs, details=details, batch_id=batch_id)
    created = sum(1 for job in jobs if job.created)
    if not created:
        earlier = await batches.batches_of(session, [job.job_id for job in jobs])
        if len(earlier) == 1:
            return BatchCreated(batch_id=earlier.pop(), jobs=jobs)
    await batches.insert_batch(session, batch_id, created, stored_callback(on_complete))
    if not created:
        await batches.complete_now(session, manager.schema, batch_id)
    return BatchCreated(batch_id=batch_id, jobs=jobs)


async def batch_in_session(session: AsyncSession, batch_id: uuid.UUID) -> BatchView | None:
    """The batch as it stands, or None."""
    return await batches.get_batch(session, batch_id)
