"""JobManager: the only code that changes a job's state, one method per transition.

The HTTP services, the worker and the maintenance services call it; none of them writes SQL
or opens a transaction of its own. Two database styles, by path:
- request and maintenance paths: Core statements through a session (app.db.jobs), in a
  transaction the manager opens, or in the caller's (methods ending in `_in_session`);
- the worker's hot path (starts, finishes, lock_key locks): prepared asyncpg statements on
  the worker's lock session or finish writer connection (app.db.job_batches), one statement
  per batch, each its own transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import coalescing, dependencies, events, job_batches, workflows
from app.db import jobs as job_rows
from app.db import pgqueuer_tables as pgqueuer
from app.db.coalescing import MAX_JOIN_TRIES
from app.db.jobs import NewJob
from app.domain.attempts import FinishRequest, RequeueRequest, StartAnswer, StartRequest
from app.domain.errors import (
    DependencyNotMetError,
    IdempotencyConflictError,
    InvalidJobError,
    JobFinishedError,
    JobNotFoundError,
    JobNotRetryableError,
    WorkflowKeyConflictError,
    WorkflowNotFoundError,
)
from app.domain.rate_limits import RateScope, WaitReason
from app.domain.spec import JobCreate
from app.domain.states import RETRYABLE_STATUSES, JobEvent, JobStatus
from app.domain.views import Job, JobCreated
from app.domain.workflows import (
    PlannedStep,
    WorkflowCanceled,
    WorkflowCreated,
    WorkflowKey,
    WorkflowStepCreated,
)
from app.jobs.availability import transient_conflict
from app.observability.tracing import TraceContext, current_trace_context
from app.settings import Settings

T = TypeVar("T")
# A transaction that lost a deadlock (app.jobs.availability.transient_conflict) runs again
# up to this many times in all, after a short random pause; then its error goes up (the
# API answers 503).
CONFLICT_TRIES = 5
CONFLICT_PAUSE_SEC = 0.05


async def again_on_conflict(action: Callable[[], Awaitable[T]]) -> T:
    """`action()`, run again while it loses a deadlock, CONFLICT_TRIES times in all."""
    for tries_left in range(CONFLICT_TRIES - 1, -1, -1):
        try:
            return await action()
        except Exception as error:
            if not tries_left or not transient_conflict(error):
                raise
        await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE_SEC))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class RescueResult:
    """What one rescue pass did (the reaper's run_once reports it)."""

    requeued: int = 0
    lost: int = 0
    redispatched: int = 0

    @property
    def acted(self) -> bool:
        """Whether the pass changed anything."""
        return bool(self.requeued or self.lost or self.redispatched)


@dataclass(frozen=True)
class KeyConflict:
    """An item not created: its idempotency_key belongs to a job of a different request."""

    index: int  # the item's position in the call
    key: str
    job_id: uuid.UUID
    # The item of the same call that created that job, if one did.
    first_index: int | None

    def error(self, *, name_items: bool) -> IdempotencyConflictError:
        """The 409 for it; `name_items` for a call of many items (`jobs[3]`)."""
        if not name_items:
            return IdempotencyConflictError(self.key, self.job_id)
        first = None if self.first_index is None else f"jobs[{self.first_index}]"
        return IdempotencyConflictError(
            self.key, self.job_id, item=f"jobs[{self.index}]", first_item=first
        )


@dataclass
class JobManager:
    """Every transition of a job: create, start, heartbeat, finish, requeue, postpone, park,
    redispatch, rescue, cancel and retry."""

    schema: str
    # Whence the manager's own transactions; the `_in_session` methods and the hot path
    # (which take the caller's session or connection) work without one.
    sessions: async_sessionmaker[AsyncSession] | None = None
    default_lease_ttl_sec: int = 60

    @classmethod
    def from_settings(
        cls, settings: Settings, sessions: async_sessionmaker[AsyncSession] | None = None
    ) -> JobManager:
        """A manager for the queue schema and defaults of `settings`."""
        return cls(
            schema=settings.pg_schema_queue,
            sessions=sessions,
            default_lease_ttl_sec=settings.dl_default_lease_ttl_sec,
        )

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction of the manager's own: committed on success."""
        async with self._session() as session, session.begin():
            yield session

    async def _in_transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work` in a transaction of the manager's own, run again while it loses a deadlock."""

        async def once() -> T:
            async with self._transaction() as session:
                return await work(session)

        return await again_on_conflict(once)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """A session of the manager's own; what it leaves uncommitted is rolled back."""
        if self.sessions is None:
            raise RuntimeError("this JobManager was made without sessions")
        async with self.sessions() as session:
            yield session

    # --- create ---------------------------------------------------------------------------

    async def create_or_find_in_session(
        self,
        session: AsyncSession,
        specs: Sequence[JobCreate],
        details: Sequence[Mapping[str, Any]] | None = None,
        traces: Sequence[TraceContext | None] | None = None,
        *,
        name_items: bool = True,
        batch_id: uuid.UUID | None = None,
    ) -> list[JobCreated | KeyConflict]:
        """Queued jobs with their first events and dispatches, in the caller's transaction.

        `specs` must already be checked (app.jobs.validation). Results come in input order.
        An idempotency_key already used (by an existing job, or an earlier item of this call)
        resolves to that job, whatever its state, when the request is the same (the same
        fingerprint, or a job from before fingerprints); for a different request the item
        is a KeyConflict. Nothing is written for an item that is not created, except this:
        a coalescing item (key first) whose queue, task and lock_key have a queued job of a
        coalescing trigger joins it (app.db.coalescing), which logs a `coalesced` event on
        that job, its details joined by the item's `details` (the HTTP request's id, say).

        An item with depends_on is written waiting, without a dispatch, and settled once
        its edges are in (dependencies.settle: queued at once if its parents already
        succeeded, canceled if one it needs failed). Its parents are locked first; an
        unknown one is an InvalidJobError naming it (and the item, `jobs[i]`, with
        `name_items`). Each new job stores its item's trace context (`traces`; without
        them, the caller's current span, app.observability.tracing), the parent of its
        attempts' spans. The jobs created belong to `batch_id` (app.jobs.batches), if
        given.
        """
        if not specs:
            return []
        await self._lock_parents(session, specs, name_items=name_items)
        if traces is None:
            traces = [current_trace_context()] * len(specs)
        new_jobs = [
            self._new_job(spec, trace, batch_id) for spec, trace in zip(specs, traces, strict=True)
        ]
        results: list[JobCreated | KeyConflict | None] = [None] * len(specs)
        created_by: dict[uuid.UUID, int] = {}
        # Jobs this transaction holds (app.db.coalescing); its own new ones cannot start
        # before it commits, so they count from the start.
        held: set[uuid.UUID] = set()
        pending = list(range(len(specs)))
        for _ in range(MAX_JOIN_TRIES):
            joins = await self._create_or_find_once(
                session, [(i, new_jobs[i]) for i in pending], results, created_by, held
            )
            if joins:
                requests = [
                    coalescing.JoinRequest(i, new_jobs[i], details[i] if details else {})
                    for i in joins
                ]
                found = await coalescing.find_and_hold(session, self.schema, requests, held)
                for index in joins:
                    queued = found.get(index)
                    if queued is not None and queued.joined:
                        results[index] = JobCreated(
                            job_id=queued.job_id,
                            status=JobStatus.QUEUED,
                            created=False,
                            coalesced=True,
                            differs=queued.differs,
                        )
                    elif queued is not None:
                        held.add(queued.job_id)  # the next insert proves it still queued
            pending = [index for index, result in enumerate(results) if result is None]
            if not pending:
                done = [result for result in results if result is not None]
                await self._settle_new(session, specs, new_jobs, done)
                return done
        # Each round needs a start of the job found, between two statements of this one.
        raise RuntimeError(f"the queued job to join kept starting ({MAX_JOIN_TRIES} tries)")

    async def _create_or_find_once(
        self,
        session: AsyncSession,
        items: list[tuple[int, NewJob]],
        results: list[JobCreated | KeyConflict | None],
        created_by: dict[uuid.UUID, int],
        held: set[uuid.UUID],
    ) -> list[int]:
        """Insert the items; settle the created and those whose idempotency_key is taken.

        The rest, in conflict with a queued coalescing job, are returned to be joined.
        """
        outcomes = await job_rows.insert_many(session, self.schema, [job for _, job in items])
        for (index, job), outcome in zip(items, outcomes, strict=True):
            if outcome.created:
                created_by[job.job_id] = index
                held.add(job.job_id)
                results[index] = JobCreated(
                    job_id=job.job_id,
                    status=JobStatus.QUEUED,
                    created=True,
                    coalesced=False if job.coalescing else msgspec.UNSET,
                )
        skipped = [
            (index, job, outcome)
            for (index, job), outcome in zip(items, outcomes, strict=True)
            if not outcome.created
        ]
        # The session sees its own inserts and every committed job that won a key race.
        existing = await job_rows.find_by_idempotency_keys(
            session, [job.idempotency_key for _, job, _ in skipped if job.idempotency_key]
        )
        joins: list[int] = []
        for index, job, outcome in skipped:
            owner = existing.get(job.idempotency_key or "")
            if owner is None:
                # Only a key or a coalescing trigger's queued job can be in the way.
                assert job.coalescing, "a job was not created, and no job holds its key"
                joins.append(index)
            elif owner.request_fingerprint not in (None, outcome.request_fingerprint):
                assert job.idempotency_key is not None
                results[index] = KeyConflict(
                    index, job.idempotency_key, owner.job_id, created_by.get(owner.job_id)
                )
            else:
                results[index] = JobCreated(
                    job_id=owner.job_id,
                    status=owner.status,
                    created=False,
                    coalesced=False if job.coalescing else msgspec.UNSET,
                )
        return joins

    async def _lock_parents(
        self, session: AsyncSession, specs: Sequence[JobCreate], *, name_items: bool
    ) -> None:
        """Lock every parent the specs name (dependencies.lock_parents); refuse an unknown one."""
        parents = {parent for spec in specs for parent in spec.depends_on or ()}
        if not parents:
            return
        found = await dependencies.lock_parents(session, parents)
        for index, spec in enumerate(specs):
            for position, parent in enumerate(spec.depends_on or ()):
                if parent not in found:
                    field = f"depends_on[{position}]"
                    if name_items:
                        field = f"jobs[{index}].{field}"
                    where = f"jobs[{index}]: " if name_items else ""
                    raise InvalidJobError(f"{where}no job has the id {parent} (field `{field}`)")

    async def _settle_new(
        self,
        session: AsyncSession,
        specs: Sequence[JobCreate],
        new_jobs: list[NewJob],
        results: list[JobCreated | KeyConflict],
    ) -> None:
        """Edges for the dependents this call created, then their statuses as settled."""
        created = [
            (job, result)
            for job, result in zip(new_jobs, results, strict=True)
            if job.depends_on and isinstance(result, JobCreated) and result.created
        ]
        if not created:
            return
        await dependencies.add_edges(
            session, [(parent, job.job_id) for job, _ in created for parent in job.depends_on or ()]
        )
        statuses = await dependencies.settle(
            session, self.schema, [job.job_id for job, _ in created]
        )
        for job, result in created:
            result.status = statuses[job.job_id]

    async def create_many_in_session(
        self,
        session: AsyncSession,
        specs: Sequence[JobCreate],
        *,
        name_items: bool = True,
        details: Sequence[Mapping[str, Any]] | None = None,
        traces: Sequence[TraceContext | None] | None = None,
        batch_id: uuid.UUID | None = None,
    ) -> list[JobCreated]:
        """create_or_find_in_session(), all items or an error: IdempotencyConflictError for
        the first item in conflict (naming it, `jobs[i]`, with `name_items`).

        After that error other items of the call may have been written: like any error in
        a transaction, the caller rolls it back.
        """
        created: list[JobCreated] = []
        for result in await self.create_or_find_in_session(
            session, specs, details, traces, batch_id=batch_id
        ):
            if isinstance(result, KeyConflict):
                raise result.error(name_items=name_items)
            created.append(result)
        return created

    async def create_many(
        self, specs: Sequence[JobCreate], details: Sequence[Mapping[str, Any]] | None = None
    ) -> list[JobCreated]:
        """create_many_in_session() in a transaction of the manager's own: all or none."""
        return await self._in_transaction(
            lambda session: self.create_many_in_session(session, specs, details=details)
        )

    async def create_or_find(
        self,
        specs: Sequence[JobCreate],
        details: Sequence[Mapping[str, Any]] | None = None,
        traces: Sequence[TraceContext | None] | None = None,
        *,
        name_items: bool = True,
    ) -> list[JobCreated | KeyConflict]:
        """create_or_find_in_session() in a transaction of the manager's own, committed."""
        return await self._in_transaction(
            lambda session: self.create_or_find_in_session(
                session, specs, details, traces, name_items=name_items
            )
        )

    async def create_workflow_in_session(
        self,
        session: AsyncSession,
        name: str,
        steps: Sequence[PlannedStep],
        key: WorkflowKey | None = None,
    ) -> WorkflowCreated:
        """A workflow's row and every step, in the caller's transaction: one batched insert
        for the steps (roots queued with their dispatches, the rest waiting), one for the
        edges. Parents outside the workflow are locked next (InvalidJobError naming an
        unknown one: roll back); the steps that have some are settled as a dependent
        trigger is. `steps` come from app.domain.workflows.plan, their jobs already checked.

        With a `key` held by an earlier workflow, nothing is written: the same request
        finds that workflow (`created` false), another is a WorkflowKeyConflictError.
        """
        workflow_id = uuid.uuid4()
        while not await workflows.insert_workflow(
            session,
            workflow_id,
            name,
            len(steps),
            idempotency_key=None if key is None else key.key,
            fingerprint=None if key is None else key.fingerprint,
        ):
            assert key is not None  # only a key can be taken already
            holder = await workflows.key_holder(session, key.key)
            if holder is not None:
                return await self._workflow_found(session, key, holder, steps)
            # Retention deleted the key's workflow between the two statements: the key is
            # free again, so the insert is tried again.
        ids = [uuid.uuid4() for _ in steps]
        outside = {parent for step in steps for parent in step.parent_jobs}
        if outside:
            found = await dependencies.lock_parents(session, outside)
            for step in steps:
                for position, parent in zip(step.job_positions, step.parent_jobs, strict=True):
                    if parent not in found:
                        field = f"steps[{step.index}].depends_on[{position}]"
                        raise InvalidJobError(f"no job has the id {parent} (field `{field}`)")
        new_jobs: list[NewJob] = []
        for step, job_id in zip(steps, ids, strict=True):
            parents = [ids[i] for i in step.parent_steps] + list(step.parent_jobs)
            new_jobs.append(
                dataclasses.replace(
                    self._new_job(step.spec.job, current_trace_context()),
                    job_id=job_id,
                    status=JobStatus.WAITING if parents else JobStatus.QUEUED,
                    depends_on=parents or None,
                    run_after=step.spec.run_after,
                    has_dependents=step.has_children,
                    workflow_id=workflow_id,
                    step_name=step.spec.name,
                )
            )
        await job_rows.insert_many(session, self.schema, new_jobs)
        await dependencies.add_edges(
            session, [(parent, job.job_id) for job in new_jobs for parent in job.depends_on or ()]
        )
        statuses = {job.job_id: job.status for job in new_jobs}
        statuses.update(
            await dependencies.settle(
                session, self.schema, [ids[step.index] for step in steps if step.parent_jobs]
            )
        )
        return WorkflowCreated(
            workflow_id=workflow_id,
            name=name,
            steps=[
                WorkflowStepCreated(
                    name=step.spec.name, job_id=job_id, status=str(statuses[job_id])
                )
                for step, job_id in zip(steps, ids, strict=True)
            ],
        )

    async def _workflow_found(
        self,
        session: AsyncSession,
        key: WorkflowKey,
        holder: workflows.KeyHolder,
        steps: Sequence[PlannedStep],
    ) -> WorkflowCreated:
        """The answer to a request sent again under its key: the workflow it created, each
        step (in the request's order) with its status now; a conflict for another request."""
        if holder.fingerprint != key.fingerprint:
            raise WorkflowKeyConflictError(key.key, holder.workflow_id)
        stored = {row.step_name: row for row in await workflows.steps(session, holder.workflow_id)}
        return WorkflowCreated(
            workflow_id=holder.workflow_id,
            name=holder.name,
            steps=[
                WorkflowStepCreated(
                    name=step.spec.name,
                    job_id=stored[step.spec.name].job_id,
                    status=str(stored[step.spec.name].status),
                )
                for step in steps
                # Retention deletes a finished workflow's steps before the workflow.
                if step.spec.name in stored
            ],
            created=False,
        )

    async def create_workflow(
        self, name: str, steps: Sequence[PlannedStep], key: WorkflowKey | None = None
    ) -> WorkflowCreated:
        """create_workflow_in_session() in a transaction of the manager's own: all or none."""
        return await self._in_transaction(
            lambda session: self.create_workflow_in_session(session, name, steps, key)
        )

    async def cancel_workflow(self, workflow_id: uuid.UUID) -> WorkflowCanceled:
        """Cancel every step that has not finished: waiting and queued ones at once (their
        dispatches withdrawn), running ones asked to stop at their next checkpoint.

        Two kinds of transaction: the unstarted steps in one (locked in job_id order); then
        each running step on its own, as a single cancel is. A running step's finish may
        hold its row while the release trigger waits for a child's, so taking both in one
        transaction could deadlock with it.
        """

        async def unstarted(session: AsyncSession) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
            if await workflows.get_workflow(session, workflow_id) is None:
                raise WorkflowNotFoundError(f"workflow {workflow_id} not found")
            canceled = await workflows.cancel_unstarted_steps(session, workflow_id)
            await pgqueuer.withdraw_dispatches_in_session(
                session, self.schema, canceled.pgq_job_ids
            )
            return canceled.job_ids, await workflows.running_steps(session, workflow_id)

        canceled, running = await self._in_transaction(unstarted)
        asked = 0
        for job_id in running:
            try:
                job = await self.cancel(job_id)
            except JobFinishedError:
                continue  # it ended meanwhile
            asked += job.status == JobStatus.RUNNING
        return WorkflowCanceled(
            workflow_id=workflow_id, canceled=len(canceled), cancel_requested=asked
        )

    def _new_job(
        self, spec: JobCreate, trace: TraceContext | None, batch_id: uuid.UUID | None = None
    ) -> NewJob:
        lease_ttl_sec = spec.lease_ttl_sec or self.default_lease_ttl_sec
        return NewJob(
            job_id=uuid.uuid4(),
            queue=spec.queue,
            task=spec.task,
            args=spec.args,
            idempotency_key=spec.idempotency_key,
            lock_key=spec.lock_key,
            concurrency_key=spec.concurrency_key,
            concurrency_limit=spec.concurrency_limit,
            rate_key=spec.rate_key,
            coalescing=spec.coalescing,
            partition_key=spec.partition_key,
            priority=spec.priority,
            max_attempts=spec.max_attempts,
            lease_ttl_sec=lease_ttl_sec,
            producer=spec.producer,
            consumer_group=spec.consumer_group,
            available_at=spec.available_at,
            status=JobStatus.WAITING if spec.depends_on else JobStatus.QUEUED,
            depends_on=spec.depends_on or None,
            run_after=spec.run_after,
            traceparent=None if trace is None else trace.traceparent,
            tracestate=None if trace is None else trace.tracestate,
            batch_id=batch_id,
        )

    # --- the worker's hot path (its lock session and finish writer connections) -----------

    async def start_many(
        self,
        connection: Any,
        requests: list[StartRequest],
        held_keys: list[str],
        worker_id: str,
        held_slots: list[str] | None = None,
    ) -> dict[uuid.UUID, StartAnswer]:
        """queued -> running for every startable request whose lock_key this session takes
        (and, for a job of a concurrency group, a slot of the group not in `held_slots`)."""
        statements = job_batches.batch_statements(self.schema)
        return await job_batches.start_batch(
            connection, statements, requests, held_keys, worker_id, held_slots
        )

    async def finish_many(
        self, connection: Any, requests: list[FinishRequest], worker_id: str
    ) -> set[uuid.UUID]:
        """running -> final for each request still owned by its attempt; the ids written."""
        statements = job_batches.batch_statements(self.schema)
        return await job_batches.finish_batch(connection, statements, requests, worker_id)

    async def unlock_keys(self, connection: Any, keys: list[str]) -> list[str]:
        """Give lock_key locks back on the lock session; the keys it did not hold."""
        statements = job_batches.batch_statements(self.schema)
        return await job_batches.unlock_keys(connection, statements, keys)

    async def relock_keys(self, connection: Any, keys: list[str]) -> list[str]:
        """Take lock_key locks again on a new lock session; the keys held elsewhere now."""
        statements = job_batches.batch_statements(self.schema)
        return await job_batches.relock_keys(connection, statements, keys)

    async def unlock_slots(self, connection: Any, slots: list[str]) -> list[str]:
        """Give concurrency-group slots back on the lock session; the ones it did not hold."""
        statements = job_batches.batch_statements(self.schema)
        return await job_batches.unlock_slots(connection, statements, slots)

    async def relock_slots(self, connection: Any, slots: list[str]) -> list[str]:
        """Take slots again on a new lock session; the ones held elsewhere now."""
        statements = job_batches.batch_statements(self.schema)
        return await job_batches.relock_slots(connection, statements, slots)

    async def release_unowned_locks(
        self, connection: Any, owned_keys: list[str], owned_slots: list[str] | None = None
    ) -> None:
        """Drop the lock session's locks and slots that no running attempt owns."""
        statements = job_batches.batch_statements(self.schema)
        await job_batches.release_unowned_locks(connection, statements, owned_keys, owned_slots)

    async def ping(self, connection: Any) -> None:
        """Prove the lock session (and so every lock it holds) is still alive."""
        await job_batches.ping(connection)

    # --- one attempt, on the worker's pool --------------------------------------------------

    async def heartbeat(
        self, job_id: uuid.UUID, attempt: int, progress: dict[str, Any] | None
    ) -> bool | None:
        """Extend the lease, save progress; cancel_requested, or None when fenced out."""
        async with self._transaction() as session:
            return await job_rows.heartbeat(session, job_id, attempt, progress)

    async def requeue(self, request: RequeueRequest) -> bool:
        """running -> queued (retry, interrupt), fenced, with a new dispatch; False if fenced.

        When a cancel was requested meanwhile, the job ends canceled instead of running again.
        """
        async with self._transaction() as session:
            return await self._requeue_in_session(session, request)

    async def _requeue_in_session(self, session: AsyncSession, request: RequeueRequest) -> bool:
        requeued = await job_rows.requeue_attempt(session, request)
        if requeued is None:
            # Queued with its cancel flag set, it could never start again.
            return await job_rows.finish_canceled(
                session,
                request.job_id,
                request.attempt,
                error=request.error,
                details={**(request.details or {}), "instead_of": request.event.value},
            )
        await job_rows.dispatch(
            session,
            self.schema,
            queue=requeued.queue,
            job_id=request.job_id,
            priority=requeued.priority,
            delay=timedelta(seconds=request.delay_sec),
        )
        return True

    async def postpone(
        self,
        job_id: uuid.UUID,
        pgq_job_id: int,
        *,
        delay_sec: float,
        lock_key: str,
        worker_id: str,
    ) -> bool:
        """A queued job whose lock_key is busy waits `delay_sec` under a new dispatch.

        No attempt is counted. Conditioned on the dispatch that tried, so a concurrent
        cancel or redispatch wins (False). The event names the worker that could not start it.
        """
        details = {"lock_key": lock_key, "retry_in_sec": delay_sec, "worker_id": worker_id}
        return await self._wait_again(
            job_id, pgq_job_id, JobEvent.LOCK_BUSY, details, WaitReason.LOCK_KEY, delay_sec
        )

    async def postpone_for_group(
        self,
        job_id: uuid.UUID,
        pgq_job_id: int,
        *,
        delay_sec: float,
        concurrency_key: str,
        concurrency_limit: int,
        worker_id: str,
    ) -> bool:
        """postpone(), for a job whose concurrency group had no free slot for it."""
        details = {
            "concurrency_key": concurrency_key,
            "concurrency_limit": concurrency_limit,
            "retry_in_sec": delay_sec,
            "worker_id": worker_id,
        }
        return await self._wait_again(
            job_id,
            pgq_job_id,
            JobEvent.CONCURRENCY_BUSY,
            details,
            WaitReason.CONCURRENCY_GROUP,
            delay_sec,
        )

    async def postpone_for_rate(
        self,
        job_id: uuid.UUID,
        pgq_job_id: int,
        *,
        until: datetime,
        limited_by: str,
        rate_key: str | None,
        worker_id: str,
    ) -> bool:
        """postpone(), for a job a rate limit of its queue held back: due again at `until`,
        the moment its bucket said (app.db.rate_limit_function)."""
        details: dict[str, Any] = {
            "limit": limited_by,
            "until": until.isoformat(),
            "worker_id": worker_id,
        }
        if limited_by == RateScope.RATE_KEY:
            details["rate_key"] = rate_key
        return await self._wait_again(
            job_id, pgq_job_id, JobEvent.RATE_LIMITED, details, WaitReason.RATE_LIMIT, until=until
        )

    async def postpone_for_trigger(
        self, job_id: uuid.UUID, pgq_job_id: int, *, delay_sec: float, worker_id: str
    ) -> bool:
        """postpone(), for a job that a still open coalescing trigger joined."""
        details = {"retry_in_sec": delay_sec, "worker_id": worker_id}
        return await self._wait_again(
            job_id, pgq_job_id, JobEvent.TRIGGER_OPEN, details, WaitReason.TRIGGER_OPEN, delay_sec
        )

    async def park(self, job_id: uuid.UUID, pgq_job_id: int, *, worker_id: str) -> bool:
        """A dispatch picked just as its queue was paused: its job waits for the resume.

        The new dispatch is parked (not due before the resume); no attempt is counted.
        """
        return await self._wait_again(
            job_id,
            pgq_job_id,
            JobEvent.QUEUE_PAUSED,
            {"worker_id": worker_id},
            WaitReason.QUEUE_PAUSED,
        )

    async def _wait_again(
        self,
        job_id: uuid.UUID,
        pgq_job_id: int,
        event: JobEvent,
        details: dict[str, Any],
        reason: WaitReason,
        delay_sec: float = 0,
        until: datetime | None = None,
    ) -> bool:
        async with self._transaction() as session:
            row = await job_rows.postpone_queued(
                session, job_id, pgq_job_id, waiting_for=reason, delay_sec=delay_sec, until=until
            )
            if row is None:
                return False
            await job_rows.dispatch(
                session,
                self.schema,
                queue=row.queue,
                job_id=job_id,
                priority=row.priority,
                delay=row.wait,
            )
            if event is JobEvent.QUEUE_PAUSED:
                details = {"queue": row.queue, **details}
            await events.add_event(session, job_id, event, row.attempt, details)
            return True

    # --- maintenance ------------------------------------------------------------------------

    async def rescue(self, batch_size: int, reaped_by: str | None = None) -> RescueResult:
        """Expired leases go back to queued (or end lost); lost dispatches are replaced.

        Keeps invariant 5: every running job has a live lease, every queued job a dispatch.
        `reaped_by` (the leader's worker id) is written on the events; their `worker_id`
        stays the worker whose attempt it was. A pass that loses a deadlock (ending a job
        releases its dependents) runs again.
        """
        return await again_on_conflict(lambda: self._rescue_once(batch_size, reaped_by))

    async def _rescue_once(self, batch_size: int, reaped_by: str | None) -> RescueResult:
        by = {} if reaped_by is None else {"reaped_by": reaped_by}
        requeued = lost = 0
        # One session for both steps, and, when the first found nothing (locked nothing,
        # wrote nothing), one transaction: an idle reaper pass is one round of statements.
        # A failure rolls back what is not committed when the session closes.
        async with self._session() as session:
            expired = await job_rows.lock_expired_leases(session, batch_size)
            for job in expired:
                details = {"worker_id": job.worker_id, **by}
                if job.attempt < job.max_attempts:
                    requeue = RequeueRequest(
                        job.job_id,
                        job.attempt,
                        JobEvent.LEASE_EXPIRED,
                        delay_sec=0,
                        count_attempt=True,
                        error=f"lease expired on attempt {job.attempt}",
                        details=details,
                    )
                    requeued += await self._requeue_in_session(session, requeue)
                else:
                    lost += await job_rows.finish_attempt(
                        session,
                        job.job_id,
                        job.attempt,
                        JobStatus.LOST,
                        JobEvent.LOST,
                        error=f"lease expired on the last attempt ({job.attempt})",
                        details=details,
                    )
            if expired:
                # Their row locks go now, not after the second step (which begins anew).
                await session.commit()
            redispatched = 0
            for queued in await job_rows.lock_undispatched(session, batch_size):
                await self._redispatch_in_session(
                    session, queued.job_id, queued.queue, queued.priority, queued.delay, by
                )
                redispatched += 1
            await session.commit()
        return RescueResult(requeued=requeued, lost=lost, redispatched=redispatched)

    async def _redispatch_in_session(
        self,
        session: AsyncSession,
        job_id: uuid.UUID,
        queue: str,
        priority: int,
        delay: timedelta,
        details: dict[str, Any],
    ) -> None:
        """A queued job that lost its dispatch gets a new one."""
        await job_rows.dispatch(
            session, self.schema, queue=queue, job_id=job_id, priority=priority, delay=delay
        )
        await events.add_event(session, job_id, JobEvent.REDISPATCHED, 0, details or None)

    # --- users' operations --------------------------------------------------------------------

    async def cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel a queued or waiting job at once; ask a running one to stop at its next
        checkpoint. Its waiting dependents are canceled with it by the database."""
        return await self._in_transaction(lambda session: self._cancel_in_session(session, job_id))

    async def _cancel_in_session(self, session: AsyncSession, job_id: uuid.UUID) -> Job:
        running: tuple[int, int | None] | None = None
        queued = await job_rows.cancel_if_queued(session, job_id)
        if queued is not None:
            attempt, pgq_job_id = queued
            if pgq_job_id is not None:
                await pgqueuer.withdraw_dispatch_in_session(session, self.schema, pgq_job_id)
            await events.add_event(session, job_id, JobEvent.CANCELED, attempt)
        else:
            running = await job_rows.request_cancel_if_running(session, job_id)
            if running is not None:
                attempt, pgq_job_id = running
                await events.add_event(session, job_id, JobEvent.CANCEL_REQUESTED, attempt)
                if pgq_job_id is not None:
                    await pgqueuer.signal_cancel_in_session(session, self.schema, pgq_job_id)
        job = await job_rows.get_job(session, job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found")
        if queued is None and running is None:
            raise JobFinishedError(job.status)
        return Job.from_row(job)

    async def retry(self, job_id: uuid.UUID) -> Job:
        """Run a failed, lost or canceled job again: queued, a fresh dispatch, a new budget.

        A dependent waits again instead while a parent has not ended as it needs, and is
        refused (DependencyNotMetError, naming the parent) while one it needs to succeed
        ended otherwise. The dependents this job's end canceled wait for it again (the
        release trigger, app.db.dependency_functions).

        The attempt counter is kept (a stale runner of an old attempt can never match a new
        one) and max_attempts becomes attempt + the job's original max_attempts, so the job
        gets its whole budget again. The original is the max_attempts the job had before
        its first retry (recorded in that `retried` event).
        """
        return await self._in_transaction(lambda session: self._retry_in_session(session, job_id))

    async def _retry_in_session(self, session: AsyncSession, job_id: uuid.UUID) -> Job:
        job = await job_rows.lock_for_retry(session, job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found")
        if job.status not in RETRYABLE_STATUSES:
            raise JobNotRetryableError(job.status)
        original = await events.original_max_attempts(session, job_id)
        max_attempts = job.attempt + (job.max_attempts if original is None else original)
        details: dict[str, Any] = {
            "previous_status": job.status,
            "max_attempts_before": job.max_attempts,
            "max_attempts": max_attempts,
        }
        if job.depends_on:
            # Its parents are locked first, as on creation: one ending meanwhile either
            # waits for this commit (and then releases it) or is seen as ended here.
            await dependencies.lock_parents(session, job.depends_on)
            verdict = await dependencies.verdict(session, job.depends_on, job.run_after)
            if verdict.blocker is not None:
                raise DependencyNotMetError(
                    job.status, verdict.blocker, verdict.blocker_status or "unsuccessfully"
                )
            if not verdict.ready:
                waiting = await job_rows.requeue_for_retry(
                    session,
                    job_id,
                    previous_status=job.status,
                    max_attempts=max_attempts,
                    pgq_job_id=None,
                    status=JobStatus.WAITING,
                )
                if waiting is None:  # cannot happen while the row lock is held
                    raise JobNotRetryableError(job.status)
                details["waiting"] = True
                await events.add_event(session, job_id, JobEvent.RETRIED, waiting.attempt, details)
                return Job.from_row(waiting)
        pgq_job_id = await job_rows.dispatch(
            session,
            self.schema,
            queue=job.queue,
            job_id=job_id,
            priority=job.priority,
            delay=timedelta(0),
        )
        row = await job_rows.requeue_for_retry(
            session,
            job_id,
            previous_status=job.status,
            max_attempts=max_attempts,
            pgq_job_id=pgq_job_id,
        )
        if row is None:  # cannot happen while the row lock is held
            raise JobNotRetryableError(job.status)
        await events.add_event(session, job_id, JobEvent.RETRIED, row.attempt, details)
        return Job.from_row(row)
