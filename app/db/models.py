"""SQLAlchemy table definitions for dl_jobs and dl_job_events.

Tables carry no schema: the engine maps the default schema to PG_SCHEMA_QUEUE through
`schema_translate_map`, so one definition serves any deployment.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.domain.states import JobStatus

_STATUS_LIST = ", ".join(f"'{s.value}'" for s in JobStatus)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for Alembic."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


class DlJob(Base):
    """The durable lifecycle record of one job, the one users query."""

    __tablename__ = "dl_jobs"

    job_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    queue: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(Text)
    args: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    # A digest of the request the job was created from (app.domain.idempotency), compared
    # when its idempotency_key is reused; NULL for jobs written before migration 0009.
    request_fingerprint: Mapped[str | None] = mapped_column(Text)
    lock_key: Mapped[str] = mapped_column(Text)
    # A concurrency group (migration 0013): at most concurrency_limit jobs of the key run at
    # once. Both NULL or both set.
    concurrency_key: Mapped[str | None] = mapped_column(Text)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    # The key of the queue's per-rate_key limit (migration 0014, app.domain.rate_limits).
    rate_key: Mapped[str | None] = mapped_column(Text)
    # Why a picked job has not started yet (app.domain.rate_limits.WaitReason); NULL once it
    # starts, and for a job no worker has held back.
    waiting_for: Mapped[str | None] = mapped_column(Text)
    # Made by a coalescing trigger (migration 0016): while queued, later coalescing triggers
    # for its queue, task and lock_key join it (uq_dl_jobs_coalescing_queued).
    coalescing: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The job's turn among its queue's tenants when the queue is fair (migration 0017,
    # app.db.fairness); NULL in a queue that is not.
    fair_round: Mapped[int | None] = mapped_column(BigInteger)
    # The W3C trace context of the trigger (migration 0019, docs/tracing.md): the parent of
    # each attempt's span. NULL when the trigger ran outside a trace (tracing off).
    traceparent: Mapped[str | None] = mapped_column(Text)
    tracestate: Mapped[str | None] = mapped_column(Text)
    partition_key: Mapped[str | None] = mapped_column(Text)
    # The batch a bulk trigger with a completion callback made it part of (migration 0020,
    # app.db.batch_functions); NULL for every other job.
    batch_id: Mapped[uuid.UUID | None] = mapped_column()
    priority: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    available_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    status: Mapped[str] = mapped_column(Text, server_default=text("'queued'"))
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("5"))
    lease_ttl_sec: Mapped[int] = mapped_column(Integer, server_default=text("60"))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    # What the pipeline returned, written with `succeeded` (migration 0015). Listings leave
    # it out unless asked (app.db.jobs.list_jobs_statement): it may be large.
    result: Mapped[Any | None] = mapped_column(JSONB)
    producer: Mapped[str | None] = mapped_column(Text)
    consumer_group: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(Text)
    # The pgqueuer row that dispatches (or last dispatched) this job.
    pgq_job_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Dependencies (migration 0018, app.db.dependency_functions): the parents it waits for
    # (also edges of dl_job_dependencies), and whether it needs them to succeed or only to
    # end. NULL for a job of its own.
    depends_on: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(UUID(as_uuid=True)))
    run_after: Mapped[str] = mapped_column(Text, server_default=text("'succeeded'"))
    # Some job depends on it: only then does a change of its status wake the release
    # trigger (its WHEN clause), so a job without dependents pays nothing for it.
    has_dependents: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The parent whose end canceled this dependent; a retry of that parent makes it wait again.
    canceled_by: Mapped[uuid.UUID | None] = mapped_column()
    # The workflow it is a step of (dl_workflows), and the step's name there.
    workflow_id: Mapped[uuid.UUID | None] = mapped_column()
    step_name: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_LIST})", name="status_valid"),
        CheckConstraint("run_after IN ('succeeded', 'any')", name="run_after_valid"),
        CheckConstraint("attempt >= 0", name="attempt_non_negative"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("lease_ttl_sec >= 1", name="lease_ttl_positive"),
        CheckConstraint("length(queue) > 0 AND length(task) > 0", name="names_present"),
        CheckConstraint("length(lock_key) > 0", name="lock_key_present"),
        CheckConstraint(
            "(concurrency_key IS NULL AND concurrency_limit IS NULL) OR "
            "(length(concurrency_key) > 0 AND concurrency_limit BETWEEN 1 AND 1000)",
            name="concurrency_group_valid",
        ),
        CheckConstraint("length(rate_key) > 0", name="rate_key_present"),
        # Status lookups of live work, and the reaper's scan of leases.
        Index(
            "ix_dl_jobs_live_status",
            "queue",
            "status",
            "priority",
            "available_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index(
            "ix_dl_jobs_lease_expiry",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
        ),
        # Listing newest first, with job_id as the keyset tiebreaker.
        Index("ix_dl_jobs_created", text("created_at DESC"), text("job_id DESC")),
        Index(
            "ix_dl_jobs_status_finished",
            "status",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
        # A lock_key's history, newest first (GET /api/v1/jobs?lock_key=): keys are many and
        # each has few jobs, so without it that listing reads the whole table. It replaces
        # ix_dl_jobs_live_lock_key (migration 0005), which no query used.
        Index(
            "ix_dl_jobs_lock_key_created",
            "lock_key",
            text("created_at DESC"),
            text("job_id DESC"),
        ),
        # The listing's `args` containment filter (migration 0010).
        Index(
            "ix_dl_jobs_args",
            "args",
            postgresql_using="gin",
            postgresql_ops={"args": "jsonb_path_ops"},
        ),
        # Partial: jobs without a key add no entry on each of their updates.
        Index(
            "uq_dl_jobs_idempotency_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # At most one queued coalescing job per (queue, task, lock_key): the arbiter that
        # makes concurrent coalescing triggers resolve to one job (app.db.coalescing).
        Index(
            "uq_dl_jobs_coalescing_queued",
            "queue",
            "task",
            "lock_key",
            unique=True,
            postgresql_where=text("status = 'queued' AND coalescing"),
        ),
        # A fair queue's queued jobs: a tenant's last round, and the queue's front
        # (app.db.fairness). Jobs of other queues add no entries.
        Index(
            "ix_dl_jobs_fair_tenant",
            "queue",
            text("coalesce(partition_key, '')"),
            "fair_round",
            postgresql_where=text("status = 'queued' AND fair_round IS NOT NULL"),
        ),
        Index(
            "ix_dl_jobs_fair_front",
            "queue",
            "fair_round",
            postgresql_where=text("status = 'queued' AND fair_round IS NOT NULL"),
        ),
        # A workflow's steps, one per name; jobs of their own add no entries.
        Index(
            "uq_dl_jobs_workflow_step",
            "workflow_id",
            "step_name",
            unique=True,
            postgresql_where=text("workflow_id IS NOT NULL"),
        ),
        Index("ix_dl_jobs_batch", "batch_id", postgresql_where=text("batch_id IS NOT NULL")),
    )


class DlJobDependency(Base):
    """One edge: `child_id` waits for `parent_id` (app.db.dependency_functions).

    The primary key finds a parent's children (the release trigger); the index on child_id
    finds a child's edges when retention deletes it.
    """

    __tablename__ = "dl_job_dependencies"

    parent_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    child_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)

    __table_args__ = (Index("ix_dl_job_dependencies_child_id", "child_id"),)


class DlWorkflow(Base):
    """A workflow: a named DAG of steps (dl_jobs rows with its workflow_id) made at once."""

    __tablename__ = "dl_workflows"

    workflow_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    step_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set by POST /api/v1/workflows/{id}/cancel.
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The request's idempotency_key, and what makes a request under it "the same"
    # (app.domain.workflows.request_fingerprint); both NULL without a key.
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_fingerprint: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("length(name) > 0 AND step_count >= 1", name="fields_valid"),
        Index("ix_dl_workflows_created_at", text("created_at DESC")),
        # GET /api/v1/workflows?name=: one name's, newest first.
        Index("ix_dl_workflows_name_created_at", "name", text("created_at DESC")),
        Index(
            "uq_dl_workflows_idempotency_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


class DlJobEvent(Base):
    """One lifecycle transition of a job (append-only history)."""

    __tablename__ = "dl_job_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    # No foreign key: each event is written by the statement that writes its job's row
    # (see migration 0003); retention deletes events with their job.
    job_id: Mapped[uuid.UUID] = mapped_column(index=False)
    event: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (Index("ix_dl_job_events_job_id_id", "job_id", "id"),)


class DlSchedule(Base):
    """A cron schedule: when it fires, the leader creates a job from its template."""

    __tablename__ = "dl_schedules"

    schedule_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    cron: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text, server_default=text("'UTC'"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # The job template.
    queue: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(Text)
    args: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    lock_key: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("5"))
    lease_ttl_sec: Mapped[int | None] = mapped_column(Integer)
    # 'api' (made over HTTP) or 'code' (declared beside a pipeline, synced at worker start).
    source: Mapped[str] = mapped_column(Text, server_default=text("'api'"))
    # NULL: the leader sets a baseline (the next fire time after now) without firing.
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_job_id: Mapped[uuid.UUID | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("length(name) > 0 AND length(cron) > 0", name="names_present"),
        CheckConstraint("source IN ('api', 'code')", name="source_valid"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        # The leader's scan for due schedules.
        Index("ix_dl_schedules_due", "next_run_at", postgresql_where=text("enabled")),
    )


class DlQueue(Base):
    """Operator state of a queue: a paused queue's jobs are not started (running ones finish).

    A queue needs no row until an operator pauses it or gives it a rate limit.
    """

    __tablename__ = "dl_queues"

    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Rate limits (migration 0014): at most *_limit starts per *_period_sec, for the queue
    # and for each rate_key; a pair is both NULL (no limit) or both set.
    start_limit: Mapped[int | None] = mapped_column(Integer)
    start_period_sec: Mapped[float | None] = mapped_column(Float)
    rate_key_limit: Mapped[int | None] = mapped_column(Integer)
    rate_key_period_sec: Mapped[float | None] = mapped_column(Float)
    # Fairness (migration 0017, app.db.fairness): start the queue's jobs round-robin over
    # their partition_key; pgqueuer's dispatches carry rounds counted from fair_base.
    fair_by_partition: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    fair_base: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))

    __table_args__ = (
        CheckConstraint(
            "(start_limit IS NULL AND start_period_sec IS NULL) OR "
            "(start_limit BETWEEN 1 AND 10000 AND start_period_sec BETWEEN 0.01 AND 86400)",
            name="start_limit_valid",
        ),
        CheckConstraint(
            "(rate_key_limit IS NULL AND rate_key_period_sec IS NULL) OR "
            "(rate_key_limit BETWEEN 1 AND 10000 AND rate_key_period_sec BETWEEN 0.01 AND 86400)",
            name="rate_key_limit_valid",
        ),
    )


class DlRateBucket(Base):
    """The recent starts of one rate limit, shared by the fleet (app.db.rate_limit_function).

    One row per (queue, rate_key); rate_key '' is the queue's own limit.
    """

    __tablename__ = "dl_rate_buckets"

    queue: Mapped[str] = mapped_column(Text, primary_key=True)
    rate_key: Mapped[str] = mapped_column(Text, primary_key=True)
    # The window's starts as (time, count) pairs, oldest first.
    started_at: Mapped[list[datetime]] = mapped_column(
        ARRAY(DateTime(timezone=True)), server_default=text("'{}'::timestamptz[]")
    )
    started_n: Mapped[list[int]] = mapped_column(ARRAY(Integer), server_default=text("'{}'::int[]"))
    # The line of refused jobs: the time the last one was told to come back, and how many
    # were told that time.
    promise_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    promise_n: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DlWorker(Base):
    """A running worker process and the queues it serves; gone when it stops cleanly.

    A row whose last_seen_at is older than three refresh periods belongs to a worker that
    died without saying so; readers ignore it (app.db.workers).
    """

    __tablename__ = "dl_workers"

    worker_id: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[dict[str, Any]] = mapped_column(JSONB)  # {queue: concurrency}
    # Written once at start (migration 0010): the package version, and {task: JSON schema
    # of its args, or null}.
    version: Mapped[str] = mapped_column(Text, server_default="")
    tasks: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class DlBatch(Base):
    """The jobs one bulk trigger made with a completion callback (app.db.batch_functions):
    how many are not final yet, how many ended each way, and the callback once created."""

    __tablename__ = "dl_batches"

    batch_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    pending: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    canceled: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    lost: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The callback's JobCreate, every field resolved (dl_enqueue() takes them as they are).
    callback: Mapped[dict[str, Any]] = mapped_column(JSONB)
    callback_job_id: Mapped[uuid.UUID | None] = mapped_column()
    # Why dl_enqueue() refused the callback, should it ever (it was checked at creation).
    callback_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("pending >= 0 AND pending <= total", name="pending_valid"),
        # Retention deletes completed batches past the retention age.
        Index(
            "ix_dl_batches_completed",
            "completed_at",
            postgresql_where=text("completed_at IS NOT NULL"),
        ),
    )
