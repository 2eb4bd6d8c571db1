"""All SQL about dl_jobs: create, read, list, and every transition on request and maintenance paths.

Core statements sent through the caller's session: functions flush, never commit; the job
manager (app.jobs.manager) owns the transaction. A transition writes its dl_jobs change and
its dl_job_events row in one statement (app.db.events.logged_with). Every write after a start
is fenced by attempt. The worker's hot path (batched starts and finishes on its lock
connection) is in app.db.job_batches.

Listing is keyset-paged newest first on ix_dl_jobs_created (created_at DESC, job_id DESC):
a page costs the rows it reads, however deep it is, and needs no count.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Table,
    Update,
    bindparam,
    column,
    delete,
    exists,
    func,
    literal,
    literal_column,
    null,
    select,
    table,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import UUID, Boolean, DateTime, Integer, Interval, Text, Uuid

from app.db import fairness
from app.db.enqueue_function import (
    coalescing_fingerprint,
    dependencies_fingerprint,
    grouped_fingerprint,
)
from app.db.events import events, logged_with
from app.db.models import DlJob, DlJobDependency
from app.db.pgqueuer_tables import ANNOUNCED, dispatch_ctes, next_dispatch_id
from app.db.sql_common import after_cursor, cutoff, qualified, quote_ident
from app.domain.attempts import PostponedJob, RequeueRequest, StartedAttempt
from app.domain.filters import JobFilter, PageCursor
from app.domain.states import FINAL_STATUSES, JobEvent, JobStatus

jobs = cast(Table, DlJob.__table__)
dependency_edges = cast(Table, DlJobDependency.__table__)
# pgqueuer's job table; unqualified so the engine's schema_translate_map places it.
pgqueuer_jobs = table("pgqueuer", column("id", BigInteger))
ONE_SECOND: ColumnElement[Any] = literal_column("interval '1 second'")
_FINAL = sorted(status.value for status in FINAL_STATUSES)
# Ids per query when many watched jobs change at once.
READ_CHUNK = 1000


# --- create ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewJob:
    """The dl_jobs columns a caller chooses for a new job."""

    job_id: uuid.UUID
    queue: str
    task: str
    args: dict[str, Any]
    idempotency_key: str | None
    lock_key: str
    concurrency_key: str | None
    concurrency_limit: int | None
    rate_key: str | None
    coalescing: bool
    partition_key: str | None
    priority: int
    max_attempts: int
    lease_ttl_sec: int
    producer: str | None
    consumer_group: str | None
    available_at: datetime | None
    # `queued` (a dispatch is written with it) or `waiting` (a dependent: none yet).
    status: str = JobStatus.QUEUED.value
    depends_on: list[uuid.UUID] | None = None
    run_after: str = "succeeded"
    # Some job of the same call depends on it (a workflow's step with children).
    has_dependents: bool = False
    workflow_id: uuid.UUID | None = None
    step_name: str | None = None
    # The W3C trace context of the trigger (app.observability.tracing); None untraced.
    traceparent: str | None = None
    tracestate: str | None = None
    # The batch a bulk trigger with a completion callback made (app.db.batches).
    batch_id: uuid.UUID | None = None


@dataclass(frozen=True)
class InsertOutcome:
    """Per input job, in input order: created, or skipped for an existing idempotency_key
    or a queued job of a coalescing trigger (uq_dl_jobs_coalescing_queued)."""

    job_id: uuid.UUID
    created: bool
    # dl_request_fingerprint() of the job's request (app.db.enqueue_function): the one
    # definition of "the same request", shared with dl_enqueue().
    request_fingerprint: str


_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("job_id", UUID(as_uuid=True)),
    ("queue", Text()),
    ("task", Text()),
    ("args", JSONB()),
    ("idempotency_key", Text()),
    ("lock_key", Text()),
    ("partition_key", Text()),
    ("priority", Integer()),
    ("max_attempts", Integer()),
    ("lease_ttl_sec", Integer()),
    ("producer", Text()),
    ("consumer_group", Text()),
    ("available_at", DateTime(timezone=True)),
    ("concurrency_key", Text()),
    ("concurrency_limit", Integer()),
    ("rate_key", Text()),
    ("coalescing", Boolean()),
    ("status", Text()),
    # JSON text: unnest cannot take an array of arrays of different lengths, and a list in
    # an array of jsonb would be read as another dimension of that array.
    ("depends_on", Text()),
    ("run_after", Text()),
    ("has_dependents", Boolean()),
    ("workflow_id", UUID(as_uuid=True)),
    ("step_name", Text()),
    ("batch_id", UUID(as_uuid=True)),
)
# Sent only when some job of the call has a trace context: an untraced call's statement
# is the one it was before traces existed.
_TRACE_COLUMNS: tuple[tuple[str, Any], ...] = (("traceparent", Text()), ("tracestate", Text()))
# The fields dl_request_fingerprint() digests: every one but the key (and the job's own
# id). The concurrency group, rate_key and coalescing came after the function (0011):
# grouped_fingerprint and coalescing_fingerprint add them.
_EXTRA = ("job_id", "idempotency_key", "concurrency_key", "concurrency_limit", "rate_key")
# Not part of the request's first fields: coalescing, and what dependencies and workflows
# added (parents count through dependencies_fingerprint; the rest is not the caller's).
_LATER = (
    "coalescing",
    "status",
    "depends_on",
    "run_after",
    "has_dependents",
    "workflow_id",
    "step_name",
    # A batch is not part of the request: the same item sent again (with or without a
    # callback) finds its job.
    "batch_id",
)
_FINGERPRINTED = ", ".join(
    f"{name} => t.{name}" for name, _ in _COLUMNS if name not in (*_EXTRA, *_LATER)
)
# An input row's parents as uuid[] (NULL for none).
_PARENTS = (
    "CASE WHEN t.depends_on IS NULL THEN NULL ELSE ARRAY("
    "SELECT CAST(p AS uuid) FROM jsonb_array_elements_text(CAST(t.depends_on AS jsonb)) AS p)"
    " END"
)


def _fingerprint(schema: str) -> str:
    """The request fingerprint of an input row `t`: group, coalescing and parents included."""
    grouped = grouped_fingerprint(
        f"{quote_ident(schema)}.dl_request_fingerprint({_FINGERPRINTED})",
        "t.concurrency_key",
        "t.concurrency_limit",
        "t.rate_key",
    )
    return dependencies_fingerprint(
        coalescing_fingerprint(grouped, "t.coalescing"), _PARENTS, "t.run_after"
    )


@cache
def _insert_statement(schema: str, traced: bool = False) -> TextClause:
    """New jobs, their first events and their dispatches, in one statement for any number;
    `traced` writes their trace contexts too."""
    columns = _COLUMNS + _TRACE_COLUMNS if traced else _COLUMNS
    names = ", ".join(name for name, _ in columns)
    typed = ", ".join(
        f"CAST(:{name} AS {_pg_array(kind)})" for name, kind in columns
    )  # unnest needs the element types spelled out
    queued = JobStatus.QUEUED.value
    trace_names = ", traceparent, tracestate" if traced else ""
    trace_values = ", i.traceparent, i.tracestate" if traced else ""
    sql = f"""
        WITH input AS MATERIALIZED (
            -- A waiting job (a dependent) takes no dispatch id: it gets one when released.
            SELECT CASE WHEN t.status = '{queued}' THEN {next_dispatch_id(schema)} END
                       AS pgq_id,
                   t.*, {_PARENTS} AS parents,
                   {_fingerprint(schema)} AS request_fingerprint
            FROM unnest({typed}) WITH ORDINALITY AS t({names}, ord)
        ),
        {fairness.first_rounds_cte(schema, "SELECT queue, partition_key FROM input")},
        new_jobs AS (
            INSERT INTO {qualified(schema, "dl_jobs")} (job_id, queue, task, args,
                idempotency_key, lock_key, partition_key, priority, max_attempts, lease_ttl_sec,
                producer, consumer_group, available_at, request_fingerprint, status, pgq_job_id,
                concurrency_key, concurrency_limit, rate_key, coalescing, fair_round,
                depends_on, run_after, has_dependents, workflow_id, step_name,
                batch_id{trace_names})
            SELECT i.job_id, i.queue, i.task, i.args, i.idempotency_key, i.lock_key,
                   i.partition_key, i.priority, i.max_attempts, i.lease_ttl_sec, i.producer,
                   i.consumer_group, coalesce(i.available_at, now()), i.request_fingerprint,
                   i.status, i.pgq_id, i.concurrency_key,
                   i.concurrency_limit, i.rate_key, i.coalescing,
                   -- A waiting job takes its round when it is released.
                   CASE WHEN i.status = '{queued}' THEN {fairness.round_sql("i", "i.ord")} END,
                   i.parents, i.run_after, i.has_dependents, i.workflow_id,
                   i.step_name, i.batch_id{trace_values}
            -- Key order, so two calls sharing keys wait on each other without deadlock;
            -- among items sharing a key (or a coalescing trigger's queue, task and
            -- lock_key) the first in the call wins.
            FROM input i {fairness.join_first_round("i")}
            ORDER BY i.idempotency_key,
                     CASE WHEN i.coalescing THEN ARRAY[i.queue, i.task, i.lock_key] END, i.ord
            -- Any arbiter: uq_dl_jobs_idempotency_key, or uq_dl_jobs_coalescing_queued for
            -- a coalescing trigger (app.db.coalescing); the caller tells which one it was.
            ON CONFLICT DO NOTHING
            RETURNING job_id, queue, task, priority, available_at, pgq_job_id, fair_round,
                      status
        ),
        to_dispatch AS (
            SELECT * FROM new_jobs WHERE status = '{queued}'
        ),
        {dispatch_ctes(schema, "to_dispatch")},
        logged AS (
            INSERT INTO {qualified(schema, "dl_job_events")} (job_id, event, attempt, details)
            SELECT job_id,
                   CASE WHEN status = '{queued}' THEN '{JobEvent.QUEUED.value}'
                        ELSE '{JobEvent.WAITING.value}' END,
                   0, jsonb_build_object('queue', queue, 'task', task)
            FROM new_jobs
        )
        SELECT i.job_id, i.request_fingerprint, n.job_id IS NOT NULL AS created
        FROM input i LEFT JOIN new_jobs n ON n.job_id = i.job_id, {ANNOUNCED}
    """
    return text(sql).bindparams(*(bindparam(name, type_=ARRAY(kind)) for name, kind in columns))


def _pg_array(kind: Any) -> str:
    names = {
        UUID: "uuid",
        Text: "text",
        JSONB: "jsonb",
        Integer: "int",
        DateTime: "timestamptz",
        Boolean: "boolean",
    }
    return names[type(kind)] + "[]"


async def insert_many(
    session: AsyncSession, schema: str, new_jobs: list[NewJob]
) -> list[InsertOutcome]:
    """Write the jobs in the session's transaction; nothing is committed here."""
    traced = any(job.traceparent for job in new_jobs)
    columns = _COLUMNS + _TRACE_COLUMNS if traced else _COLUMNS
    params = {name: [getattr(job, name) for job in new_jobs] for name, _ in columns}
    params["depends_on"] = [
        None if job.depends_on is None else json.dumps([str(p) for p in job.depends_on])
        for job in new_jobs
    ]
    result = await session.execute(_insert_statement(schema, traced), params)
    rows = {row.job_id: row for row in result}
    return [
        InsertOutcome(job.job_id, rows[job.job_id].created, rows[job.job_id].request_fingerprint)
        for job in new_jobs
    ]


@cache
def _dispatch_statement(schema: str) -> TextClause:
    """One new dispatch for one job, linked to its dl_jobs row in the same statement."""
    sql = f"""
        WITH source AS MATERIALIZED (
            SELECT {next_dispatch_id(schema)} AS pgq_job_id, CAST(:job_id AS uuid) AS job_id,
                   CAST(:queue AS text) AS queue, CAST(:priority AS int) AS priority,
                   now() + CAST(:delay AS interval) AS available_at,
                   (SELECT fair_round FROM {qualified(schema, "dl_jobs")}
                    WHERE job_id = CAST(:job_id AS uuid)) AS fair_round
        ),
        {dispatch_ctes(schema, "source")},
        linked AS (
            UPDATE {qualified(schema, "dl_jobs")} j SET pgq_job_id = d.id
            FROM dispatched d, source s
            WHERE j.job_id = s.job_id AND d.id = s.pgq_job_id
        )
        SELECT id FROM dispatched, {ANNOUNCED}
    """
    return text(sql).bindparams(
        bindparam("job_id", type_=Uuid()),
        bindparam("queue", type_=Text()),
        bindparam("priority", type_=Integer()),
        bindparam("delay", type_=Interval()),
    )


async def dispatch(
    session: AsyncSession,
    schema: str,
    *,
    queue: str,
    job_id: uuid.UUID,
    priority: int,
    delay: timedelta,
) -> int:
    """Give `job_id` a new pgqueuer dispatch, due after `delay`, and link it; returns its id.

    While the queue is paused the dispatch is parked until the resume.
    """
    result = await session.execute(
        _dispatch_statement(schema),
        {"queue": queue, "job_id": job_id, "priority": priority, "delay": max(delay, timedelta(0))},
    )
    return int(result.scalar_one())


# --- read -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyOwner:
    """The job an idempotency_key belongs to, and the request it was created from."""

    job_id: uuid.UUID
    status: str
    # None for jobs written before migration 0009.
    request_fingerprint: str | None


async def find_by_idempotency_keys(session: AsyncSession, keys: list[str]) -> dict[str, KeyOwner]:
    """The jobs created with these idempotency keys, by key."""
    if not keys:
        return {}
    rows = await session.execute(
        select(
            jobs.c.idempotency_key, jobs.c.job_id, jobs.c.status, jobs.c.request_fingerprint
        ).where(jobs.c.idempotency_key.in_(keys))
    )
    return {row[0]: KeyOwner(row[1], row[2], row[3]) for row in rows}


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> DlJob | None:
    """The job with this id, if any."""
    return await session.get(DlJob, job_id, populate_existing=True)


async def get_jobs(session: AsyncSession, job_ids: Collection[uuid.UUID]) -> list[DlJob]:
    """The jobs with these ids that exist, read in chunks of READ_CHUNK ids."""
    ids = list(job_ids)
    found: list[DlJob] = []
    for start in range(0, len(ids), READ_CHUNK):
        chunk = ids[start : start + READ_CHUNK]
        rows = await session.scalars(
            select(DlJob).where(DlJob.job_id.in_(chunk)).execution_options(populate_existing=True)
        )
        found.extend(rows)
    return found


def filter_conditions(filters: JobFilter) -> list[ColumnElement[bool]]:
    """The WHERE clause of a listing, one condition per filter given."""
    conditions: list[ColumnElement[bool]] = []
    if filters.statuses:
        # Statuses are inlined (they are enum members): with bind parameters a cached
        # generic plan could not prove the partial indexes on live statuses usable.
        conditions.append(
            jobs.c.status.in_(
                bindparam(
                    "statuses",
                    [s.value for s in filters.statuses],
                    expanding=True,
                    literal_execute=True,
                )
            )
        )
        if all(status.is_final for status in filters.statuses):
            # Implied (every final transition sets finished_at, a retry clears it): it lets
            # the planner use the partial ix_dl_jobs_status_finished for rare statuses.
            conditions.append(jobs.c.finished_at.is_not(None))
    for name in ("queue", "task", "lock_key", "partition_key", "producer", "consumer_group"):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(jobs.c[name] == value)
    if filters.created_after is not None:
        conditions.append(jobs.c.created_at >= filters.created_after)
    if filters.created_before is not None:
        conditions.append(jobs.c.created_at < filters.created_before)
    if filters.finished_after is not None:
        conditions.append(jobs.c.finished_at >= filters.finished_after)
    if filters.finished_before is not None:
        conditions.append(jobs.c.finished_at < filters.finished_before)
        # Implied (a job finishes after it was created), and it lets the newest-first scan
        # start at the range instead of walking every job created since.
        conditions.append(jobs.c.created_at < filters.finished_before)
    if filters.args is not None:
        # Containment with a bound jsonb: ix_dl_jobs_args (GIN, jsonb_path_ops) serves it.
        conditions.append(jobs.c.args.op("@>")(type_coerce(filters.args, JSONB)))
    return conditions


def list_jobs_statement(
    filters: JobFilter, *, after: PageCursor | None, limit: int, with_result: bool = False
) -> Select[DlJob]:
    """The listing query: jobs matching `filters`, newest first, strictly after `after`.

    Results (up to DL_RESULT_MAX_BYTES each) are read only `with_result`; otherwise the
    column is left out, and reading it from a row raises instead of loading it.
    """
    statement = select(DlJob).where(*filter_conditions(filters))
    if not with_result:
        statement = statement.options(defer(DlJob.result, raiseload=True))
    if after is not None:
        statement = statement.where(after_cursor(jobs.c.created_at, jobs.c.job_id, after))
    return statement.order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc()).limit(limit)


async def list_jobs(
    session: AsyncSession,
    filters: JobFilter,
    *,
    after: PageCursor | None,
    limit: int,
    with_result: bool = False,
) -> Sequence[DlJob]:
    """Up to `limit` jobs matching `filters`, newest first, strictly after `after`; their
    results only `with_result`."""
    statement = list_jobs_statement(filters, after=after, limit=limit, with_result=with_result)
    return (await session.scalars(statement)).all()


@dataclass(frozen=True)
class ResultRow:
    """A job's status and stored result (None unless it succeeded with one)."""

    job_id: uuid.UUID
    status: str
    result: Any


async def read_results(session: AsyncSession, job_ids: Collection[uuid.UUID]) -> list[ResultRow]:
    """The status and result of each of these jobs that exists, READ_CHUNK ids a query."""
    ids = list(job_ids)
    found: list[ResultRow] = []
    for start in range(0, len(ids), READ_CHUNK):
        rows = await session.execute(
            select(jobs.c.job_id, jobs.c.status, jobs.c.result).where(
                jobs.c.job_id.in_(ids[start : start + READ_CHUNK])
            )
        )
        found.extend(ResultRow(**row._asdict()) for row in rows)
    return found


async def job_exists(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Whether a job has this id."""
    return bool(await session.scalar(select(exists().where(jobs.c.job_id == job_id))))


async def ping(session: AsyncSession) -> bool:
    """Whether the database answers a trivial query."""
    return bool((await session.execute(select(literal(1)))).scalar_one() == 1)


# --- transitions ----------------------------------------------------------------------------


ATTEMPT_COLUMNS = tuple(
    jobs.c[name]
    for name in (
        "job_id",
        "queue",
        "task",
        "args",
        "lock_key",
        "priority",
        "attempt",
        "max_attempts",
        "lease_ttl_sec",
    )
)


def _fenced(job_id: uuid.UUID, attempt: int) -> Update:
    """An update that only touches the job while this attempt is the running one."""
    return update(jobs).where(
        jobs.c.job_id == job_id,
        jobs.c.attempt == attempt,
        jobs.c.status == JobStatus.RUNNING,
    )


async def heartbeat(
    session: AsyncSession,
    job_id: uuid.UUID,
    attempt: int,
    progress: dict[str, Any] | None,
) -> bool | None:
    """Extend the lease and save progress; returns cancel_requested, or None when fenced out."""
    values: dict[str, Any] = {
        "heartbeat_at": func.now(),
        "lease_expires_at": func.now() + jobs.c.lease_ttl_sec * ONE_SECOND,
    }
    if progress is not None:
        values["progress"] = type_coerce(progress, JSONB)
    row = (
        await session.execute(
            _fenced(job_id, attempt).values(**values).returning(jobs.c.cancel_requested)
        )
    ).first()
    return None if row is None else bool(row[0])


async def finish_attempt(
    session: AsyncSession,
    job_id: uuid.UUID,
    attempt: int,
    status: JobStatus,
    event: JobEvent,
    *,
    progress: dict[str, Any] | None = None,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """running -> a final status, fenced; returns whether this attempt still owned the job."""
    values: dict[str, Any] = {
        "status": status,
        "finished_at": func.now(),
        "lease_expires_at": None,
        "updated_at": func.now(),
        "error": error,
    }
    if progress is not None:
        values["progress"] = type_coerce(progress, JSONB)
    change = _fenced(job_id, attempt).values(**values).returning(jobs.c.job_id, jobs.c.attempt)
    return (await session.execute(logged_with(change, event, details))).first() is not None


async def requeue_attempt(session: AsyncSession, request: RequeueRequest) -> StartedAttempt | None:
    """running -> queued after `delay_sec`, fenced; the caller adds the new dispatch.

    A job whose cancel was requested is not requeued (None): see finish_canceled.
    """
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED,
        "available_at": func.now() + literal(request.delay_sec) * ONE_SECOND,
        "lease_expires_at": None,
        "updated_at": func.now(),
    }
    if not request.count_attempt:
        values["attempt"] = jobs.c.attempt - 1
    if request.error is not None:
        values["error"] = request.error
    change = (
        _fenced(request.job_id, request.attempt)
        .where(jobs.c.cancel_requested.is_(False))
        .values(**values)
        .returning(*ATTEMPT_COLUMNS)
    )
    row = (await session.execute(logged_with(change, request.event, request.details))).first()
    return None if row is None else StartedAttempt(**row._asdict())


async def finish_canceled(
    session: AsyncSession,
    job_id: uuid.UUID,
    attempt: int,
    *,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """running -> canceled, fenced, for an attempt that stopped after a cancel was requested.

    A job that would go back to queued (retry, expired lease, shutdown) while its cancel
    flag is set ends here instead: queued with the flag set, it could never start again.
    """
    values: dict[str, Any] = {
        "status": JobStatus.CANCELED,
        "finished_at": func.now(),
        "lease_expires_at": None,
        "updated_at": func.now(),
    }
    if error is not None:
        values["error"] = error
    change = (
        _fenced(job_id, attempt)
        .where(jobs.c.cancel_requested.is_(True))
        .values(**values)
        .returning(jobs.c.job_id, jobs.c.attempt)
    )
    row = (await session.execute(logged_with(change, JobEvent.CANCELED, details))).first()
    return row is not None


async def postpone_queued(
    session: AsyncSession,
    job_id: uuid.UUID,
    pgq_job_id: int,
    *,
    waiting_for: str,
    delay_sec: float = 0,
    until: datetime | None = None,
) -> PostponedJob | None:
    """Push a queued job's available_at out (by `delay_sec`, or to `until` when given, never
    into the past), only while `pgq_job_id` is its dispatch; `waiting_for` says why."""
    available_at: ColumnElement[Any] = func.now() + literal(delay_sec) * ONE_SECOND
    if until is not None:
        available_at = func.greatest(func.now(), literal(until, DateTime(timezone=True)))
    row = (
        await session.execute(
            update(jobs)
            .where(
                jobs.c.job_id == job_id,
                jobs.c.status == JobStatus.QUEUED,
                jobs.c.pgq_job_id == pgq_job_id,
            )
            .values(available_at=available_at, waiting_for=waiting_for)
            .returning(
                jobs.c.queue,
                jobs.c.priority,
                jobs.c.attempt,
                jobs.c.available_at,
                (jobs.c.available_at - func.now()).label("wait"),
            )
        )
    ).first()
    return None if row is None else PostponedJob(**row._asdict())


async def cancel_if_queued(
    session: AsyncSession, job_id: uuid.UUID
) -> tuple[int, int | None] | None:
    """Move a queued or waiting job to canceled; returns (attempt, pgq_job_id) or None if
    it is neither (a waiting job has no dispatch: pgq_job_id None).

    The row lock orders this against a worker's start: whichever commits first wins. Its
    dependents are canceled with it by the database (app.db.dependency_functions).
    """
    statement = (
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.status.in_([JobStatus.QUEUED, JobStatus.WAITING]))
        .values(
            status=JobStatus.CANCELED,
            cancel_requested=True,
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(jobs.c.attempt, jobs.c.pgq_job_id)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1])


async def request_cancel_if_running(
    session: AsyncSession, job_id: uuid.UUID
) -> tuple[int, int | None] | None:
    """Flag a running job for cooperative cancel; returns (attempt, pgq_job_id) or None."""
    statement = (
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.status == JobStatus.RUNNING)
        .values(cancel_requested=True, updated_at=func.now())
        .returning(jobs.c.attempt, jobs.c.pgq_job_id)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1])


@dataclass(frozen=True)
class RetryCandidate:
    """A job locked for a retry, with what deciding and dispatching it needs."""

    status: str
    attempt: int
    max_attempts: int
    queue: str
    priority: int
    depends_on: list[uuid.UUID] | None = None
    run_after: str = "succeeded"


async def lock_for_retry(session: AsyncSession, job_id: uuid.UUID) -> RetryCandidate | None:
    """Lock the job's row until the transaction ends; None when there is no such job.

    A concurrent retry (or any other writer) waits here, then sees the row as committed.
    """
    row = (
        await session.execute(
            select(
                jobs.c.status,
                jobs.c.attempt,
                jobs.c.max_attempts,
                jobs.c.queue,
                jobs.c.priority,
                jobs.c.depends_on,
                jobs.c.run_after,
            )
            .where(jobs.c.job_id == job_id)
            .with_for_update()
        )
    ).first()
    return None if row is None else RetryCandidate(**row._asdict())


async def requeue_for_retry(
    session: AsyncSession,
    job_id: uuid.UUID,
    *,
    previous_status: str,
    max_attempts: int,
    pgq_job_id: int | None,
    status: JobStatus = JobStatus.QUEUED,
) -> DlJob | None:
    """`previous_status` -> queued under dispatch `pgq_job_id` (or waiting, with none, for a
    dependent whose parents have not all ended); None if the status moved.

    `attempt` is kept, so no attempt number is ever used twice (fencing relies on it).
    """
    statement = (
        update(DlJob)
        .where(jobs.c.job_id == job_id, jobs.c.status == previous_status)
        .values(
            status=status,
            canceled_by=None,
            max_attempts=max_attempts,
            pgq_job_id=pgq_job_id,
            available_at=func.now(),
            error=None,
            progress=null(),  # SQL NULL; None would store JSON null
            result=null(),  # only the attempt that succeeds has one
            finished_at=None,
            lease_expires_at=None,
            heartbeat_at=None,
            cancel_requested=False,
            updated_at=func.now(),
        )
        .returning(DlJob)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).first()


# --- maintenance (the reaper) -----------------------------------------------------------------


@dataclass(frozen=True)
class ExpiredLease:
    """A running job whose lease ran out."""

    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    worker_id: str | None


@dataclass(frozen=True)
class Undispatched:
    """A queued job with no pgqueuer row to wake a worker for it."""

    job_id: uuid.UUID
    queue: str
    priority: int
    delay: timedelta


async def lock_expired_leases(session: AsyncSession, limit: int) -> list[ExpiredLease]:
    """Running jobs past their lease, locked for this transaction (others skip them)."""
    rows = await session.execute(
        select(jobs.c.job_id, jobs.c.attempt, jobs.c.max_attempts, jobs.c.worker_id)
        .where(jobs.c.status == JobStatus.RUNNING, jobs.c.lease_expires_at < func.now())
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [ExpiredLease(**row._asdict()) for row in rows]


async def lock_undispatched(session: AsyncSession, limit: int) -> list[Undispatched]:
    """Queued jobs whose pgqueuer row is gone, locked for this transaction."""
    has_dispatch = exists().where(pgqueuer_jobs.c.id == jobs.c.pgq_job_id)
    rows = await session.execute(
        select(
            jobs.c.job_id,
            jobs.c.queue,
            jobs.c.priority,
            func.greatest(jobs.c.available_at - func.now(), timedelta(0)).label("delay"),
        )
        .where(jobs.c.status == JobStatus.QUEUED, ~has_dispatch)
        .limit(limit)
        .with_for_update(of=jobs, skip_locked=True)
    )
    return [Undispatched(**row._asdict()) for row in rows]


# --- retention (the leader's pruning) -------------------------------------------------------
#
# Every statement deletes at most `limit` rows, picked through an index and locked with SKIP
# LOCKED, so one batch is one short transaction that never waits for a row another
# transaction holds. `ARRAY(SELECT ...)` keeps the delete itself a primary-key lookup: a
# plain `IN (SELECT ...)` lets the planner choose a hash join over the whole table.


@dataclass(frozen=True)
class JobBatch:
    """What one batch of finished jobs took with it."""

    jobs: int
    events: int


async def delete_finished(session: AsyncSession, retention: timedelta, limit: int) -> JobBatch:
    """Delete up to `limit` jobs that finished before now() - retention, with their events.

    Only final statuses qualify: a queued or running job stays however old it is. The rows
    are locked before they are deleted and their status is checked again, so a job that is
    being retried (or otherwise changed) right now is skipped.
    """
    doomed = (
        select(jobs.c.job_id)
        # ix_dl_jobs_status_finished: (status, finished_at) WHERE finished_at IS NOT NULL.
        .where(jobs.c.status.in_(_FINAL), jobs.c.finished_at < cutoff(retention))
        # The index order: a plain index scan that stops after `limit` rows, never a
        # sequential or bitmap scan that reads every old row first.
        .order_by(jobs.c.status, jobs.c.finished_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    gone = (
        delete(jobs)
        .where(
            jobs.c.job_id == func.any(func.array(doomed.scalar_subquery())),
            jobs.c.status.in_(_FINAL),
        )
        .returning(jobs.c.job_id)
        .cte("gone")
    )
    # A deleted job's edges go with it (as child, and as parent: a waiting child reads a
    # parent that is gone as one that no longer holds it back).
    gone_edges = (
        delete(dependency_edges)
        .where(
            dependency_edges.c.child_id
            == func.any(func.array(select(gone.c.job_id).scalar_subquery()))
        )
        .returning(dependency_edges.c.child_id)
        .cte("gone_edges")
    )
    gone_parent_edges = (
        delete(dependency_edges)
        .where(
            dependency_edges.c.parent_id
            == func.any(func.array(select(gone.c.job_id).scalar_subquery()))
        )
        .returning(dependency_edges.c.parent_id)
        .cte("gone_parent_edges")
    )
    gone_events = (
        delete(events)
        # ix_dl_job_events_job_id_id: (job_id, id).
        .where(events.c.job_id == func.any(func.array(select(gone.c.job_id).scalar_subquery())))
        .returning(events.c.id)
        .cte("gone_events")
    )
    row = (
        await session.execute(
            select(
                select(func.count()).select_from(gone).scalar_subquery(),
                select(func.count()).select_from(gone_events).scalar_subquery(),
                # Named, so that SQLAlchemy renders these CTEs at all.
                select(func.count()).select_from(gone_edges).scalar_subquery(),
                select(func.count()).select_from(gone_parent_edges).scalar_subquery(),
            )
        )
    ).one()
    return JobBatch(jobs=int(row[0]), events=int(row[1]))
