"""JobService: what users do with jobs (trigger, look, cancel, retry); JobManager makes changes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import events
from app.db import jobs as job_rows
from app.db.job_counts import count_jobs
from app.domain.batches import BatchView
from app.domain.errors import (
    BatchNotFoundError,
    InvalidJobError,
    JobNotFoundError,
    JobStatusConflictError,
)
from app.domain.filters import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, JobFilter, PageCursor
from app.domain.spec import JobCreate
from app.domain.views import (
    Job,
    JobActionResult,
    JobCounts,
    JobCreated,
    JobHistory,
    JobHistoryEvent,
    JobPage,
)
from app.jobs.batches import (
    WHERE,
    BatchCreated,
    batch_in_session,
    check_callback,
    create_batch_in_session,
)
from app.jobs.batching import Round, RoundBatcher
from app.jobs.manager import JobManager, KeyConflict
from app.jobs.validation import check_destinations, check_spec, check_specs
from app.jobs.worker_registry import WorkerRegistry
from app.observability.tracing import TraceContext, current_trace_context
from app.settings import Settings

EVENTS_LIMIT_MAX = 1000
# dl_job_events.id is a bigint: a larger `after` would reach PostgreSQL as an asyncpg error.
EVENT_ID_MAX = 2**63 - 1
# Triggers written by one statement; more wait for the next round.
MAX_TRIGGER_ROUND = 500

logger = logging.getLogger("app.jobs.service")


@dataclass(frozen=True)
class Trigger:
    """One trigger waiting for its round: the checked spec, and who asked (for the events)."""

    spec: JobCreate
    # Joined into the details of a `coalesced` event, e.g. the HTTP request's id.
    origin: Mapping[str, Any]
    # The request's span, taken here: the round is written from another task.
    trace: TraceContext | None = None


def _origin(request_id: str | None, item: int | None = None) -> dict[str, Any]:
    """What a `coalesced` event says about the request that joined the job."""
    origin: dict[str, Any] = {}
    if request_id is not None:
        origin["request_id"] = request_id
    if item is not None:
        origin["item"] = item
    return origin


@dataclass
class JobService:
    """The operations users perform on jobs."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    max_trigger_round: int = MAX_TRIGGER_ROUND
    manager: JobManager = field(init=False)
    registry: WorkerRegistry = field(init=False)
    _triggers: RoundBatcher[Trigger, JobCreated] = field(init=False)

    def __post_init__(self) -> None:
        self.manager = JobManager.from_settings(self.settings, self.sessions)
        self.registry = WorkerRegistry.from_settings(self.settings, self.sessions)
        # A trigger whose client went away is dropped from its round: nothing was written.
        self._triggers = RoundBatcher(
            self._write_triggers, self.max_trigger_round, name="trigger-batcher"
        )

    async def close(self) -> None:
        """Stop background work (the triggers' group commit; waiting ones are cancelled)."""
        await self._triggers.close()

    async def trigger(self, spec: JobCreate, request_id: str | None = None) -> JobCreated:
        """Create a job (or return the one with the same idempotency_key and request) once
        committed; IdempotencyConflictError when the key's job came from another request.
        A coalescing spec may join a queued job instead (JobManager.create_or_find_in_session);
        `request_id` is then written on that job's `coalesced` event.

        Group commit: concurrent triggers share one statement and one transaction, so under
        load a round of N triggers costs about what one costs alone, and pgqueuer's
        statement-level NOTIFY fires once per round. Each still answers only once its job is
        committed, and keeps its own idempotency. A lone trigger is written at once; a round
        forms from the triggers that arrived while the previous one was written. A spec is
        checked before it joins a round, so a bad request fails alone, and a key conflict
        fails only its own trigger.
        """
        spec = check_spec(spec)
        await check_destinations([spec], self.settings)
        trigger = Trigger(spec, _origin(request_id), current_trace_context())
        created = await self._triggers.submit(trigger)
        warnings = await self.registry.unserved_warnings([spec.queue])
        return msgspec.structs.replace(created, warnings=warnings) if warnings else created

    async def _write_triggers(self, batch: Round[Trigger, JobCreated]) -> None:
        """One round in one transaction; if it fails, each trigger is written on its own,
        so one unlucky job cannot fail its neighbours."""
        if not batch:
            return
        try:
            triggers = batch.requests
            results = await self.manager.create_or_find(
                [t.spec for t in triggers],
                [t.origin for t in triggers],
                [t.trace for t in triggers],
                name_items=False,
            )
        except Exception as error:
            if len(batch) == 1:
                batch.fail_all(error)
                return
            logger.warning("a round of %d triggers failed; writing them one by one", len(batch))
            for entry in batch:
                if not entry.abandoned:  # its client may have gone meanwhile
                    await self._write_triggers(Round([entry]))
            return
        for entry, result in zip(batch, results, strict=True):
            if isinstance(result, KeyConflict):
                # Its own trigger only: the key's job may be another trigger's of this round.
                entry.fail(result.error(name_items=False))
            else:
                entry.settle(result)

    async def trigger_many(
        self, specs: list[JobCreate], request_id: str | None = None
    ) -> list[JobCreated]:
        """Create many jobs in one transaction (all or none) and commit.

        An item whose idempotency_key belongs to a job of a different request (an existing
        one, or an earlier item's) rejects the call: IdempotencyConflictError naming it.
        A coalescing item that joins a queued job names `request_id` and itself (`item`) on
        that job's `coalesced` event.
        """
        specs = check_specs(specs)
        await check_destinations(specs, self.settings, bulk=True)
        origins = [_origin(request_id, index) for index in range(len(specs))]
        return await self.manager.create_many(specs, origins)

    async def trigger_batch(
        self, specs: list[JobCreate], on_complete: JobCreate, request_id: str | None = None
    ) -> BatchCreated:
        """trigger_many() as one batch with a completion callback (app.jobs.batches)."""
        specs = check_specs(specs)
        on_complete = check_callback(on_complete)
        await check_destinations(specs, self.settings, bulk=True)
        await check_destinations([on_complete], self.settings, where=WHERE)
        origins = [_origin(request_id, index) for index in range(len(specs))]
        async with self.sessions() as session, session.begin():
            return await create_batch_in_session(session, self.manager, specs, on_complete, origins)

    async def batch(self, batch_id: uuid.UUID) -> BatchView:
        """The batch as it stands (GET /batches/{id})."""
        async with self.sessions() as session:
            found = await batch_in_session(session, batch_id)
        if found is None:
            raise BatchNotFoundError(f"batch {batch_id} not found")
        return found

    async def unserved_warnings(self, specs: list[JobCreate]) -> list[str]:
        """One warning per queue of `specs` that no live worker serves (a cached view)."""
        return await self.registry.unserved_warnings(spec.queue for spec in specs)

    async def status(self, job_id: uuid.UUID) -> Job:
        """The job as stored now (GET /jobs/{id} and /jobs/{id}/status)."""
        async with self.sessions() as session:
            job = await job_rows.get_job(session, job_id)
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found")
            return Job.from_row(job)

    async def cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel a queued job at once; ask a running one to stop at its next checkpoint."""
        return await self.manager.cancel(job_id)

    async def list_jobs(
        self,
        filters: JobFilter,
        *,
        cursor: str | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
        with_result: bool = False,
    ) -> JobPage:
        """Jobs matching `filters`, newest first, `limit` at a time after `cursor`; each
        job's `result` only `with_result` (results may be large)."""
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidJobError(f"limit must be 1..{LIST_LIMIT_MAX} (query parameter `limit`)")
        after = PageCursor.decode(cursor) if cursor else None
        async with self.sessions() as session:
            # One row more than asked tells whether another page exists.
            rows = await job_rows.list_jobs(
                session, filters, after=after, limit=limit + 1, with_result=with_result
            )
            page = [Job.from_row(row, with_result=with_result) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = PageCursor(page[-1].created_at, page[-1].job_id).encode()
        return JobPage(jobs=page, next_cursor=next_cursor)

    async def events(
        self, job_id: uuid.UUID, *, after: int | None = None, limit: int = EVENTS_LIMIT_MAX
    ) -> JobHistory:
        """The job's history, oldest first, `limit` events at a time after event id `after`."""
        if not 1 <= limit <= EVENTS_LIMIT_MAX:
            raise InvalidJobError(f"limit must be 1..{EVENTS_LIMIT_MAX} (query parameter `limit`)")
        async with self.sessions() as session:
            if not await job_rows.job_exists(session, job_id):
                raise JobNotFoundError(f"job {job_id} not found")
            rows = await events.list_events(session, job_id, after_id=after, limit=limit + 1)
            page = [JobHistoryEvent.from_row(row) for row in rows[:limit]]
        next_after = page[-1].id if len(rows) > limit else None
        return JobHistory(job_id=job_id, events=page, next_after=next_after)

    async def retry(self, job_id: uuid.UUID) -> Job:
        """Run a failed, lost or canceled job again (see JobManager.retry)."""
        return await self.manager.retry(job_id)

    async def counts(self, filters: JobFilter) -> JobCounts:
        """How many jobs matching `filters` are in each state."""
        async with self.sessions() as session:
            return await count_jobs(session, filters)

    async def cancel_many(self, job_ids: Sequence[uuid.UUID]) -> list[JobActionResult]:
        """Cancel each job on its own (see `cancel`); one result per id, in order."""
        return await self._each(job_ids, self.manager.cancel, "canceled")

    async def retry_many(self, job_ids: Sequence[uuid.UUID]) -> list[JobActionResult]:
        """Retry each job on its own (see `retry`); one result per id, in order."""
        return await self._each(job_ids, self.manager.retry, "retried")

    async def _each(
        self,
        job_ids: Sequence[uuid.UUID],
        action: Callable[[uuid.UUID], Awaitable[Job]],
        done: str,
    ) -> list[JobActionResult]:
        """Run the single-job `action` per id, each in its own transaction: one job's
        conflict leaves the others done, and a job is never half changed."""
        seen: dict[uuid.UUID, int] = {}
        for index, job_id in enumerate(job_ids):
            first = seen.setdefault(job_id, index)
            if first != index:
                # Twice in one call is a client mistake; acting twice would answer a
                # conflict for a job this same call just changed.
                raise InvalidJobError(f"job_ids[{index}] repeats job_ids[{first}] ({job_id})")
        results: list[JobActionResult] = []
        for job_id in job_ids:
            try:
                job = await action(job_id)
            except JobNotFoundError:
                results.append(JobActionResult(job_id=job_id, outcome="not_found"))
            except JobStatusConflictError as conflict:
                results.append(
                    JobActionResult(
                        job_id=job_id,
                        outcome="conflict",
                        status=conflict.status,
                        detail=conflict.message,
                    )
                )
            else:
                results.append(JobActionResult(job_id=job_id, outcome=done, status=job.status))
        return results

    async def database_ready(self) -> bool:
        """Whether the database answers a trivial query."""
        async with self.sessions() as session:
            return await job_rows.ping(session)
