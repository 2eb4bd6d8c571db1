"""The API's answers as the client reads them: lenient structs (unknown fields are ignored).

These mirror the server's views without importing them, so the client stays HTTP-only; fields
a newer or older server might leave out have defaults.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "lost"})


class Job(msgspec.Struct, kw_only=True):
    """A job as GET /api/v1/jobs/{id}/status shows it (the server's Job)."""

    job_id: str
    status: str
    queue: str
    task: str
    lock_key: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_key: str | None = None
    # Why a queued job a worker picked has not started (lock_key, concurrency_group,
    # rate_limit, queue_paused, trigger_open); it may start from available_at.
    waiting_for: str | None = None
    idempotency_key: str | None = None
    partition_key: str | None = None
    priority: int | None = None
    available_at: datetime | None = None
    attempt: int = 0
    max_attempts: int | None = None
    lease_ttl_sec: int | None = None
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    cancel_requested: bool = False
    progress: dict[str, Any] | None = None
    error: str | None = None
    producer: str | None = None
    consumer_group: str | None = None
    worker_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The jobs it depends on; while they have not ended as run_after needs it is `waiting`.
    depends_on: list[str] | None = None
    run_after: str = "succeeded"
    canceled_by: str | None = None
    workflow_id: str | None = None
    step_name: str | None = None
    # What the pipeline returned, once succeeded (absent from listings unless asked).
    result: Any = None

    @property
    def finished(self) -> bool:
        """Whether the status is final (succeeded, failed, canceled or lost)."""
        return self.status in FINAL_STATUSES


class TriggerResult(msgspec.Struct, kw_only=True):
    """POST /api/v1/jobs/trigger: the job a trigger resolved to."""

    job_id: str
    status: str
    created: bool


class JobPage(msgspec.Struct, kw_only=True):
    """GET /api/v1/jobs: one page, newest first."""

    jobs: list[Job]
    next_cursor: str | None = None


class JobEvent(msgspec.Struct, kw_only=True):
    """One row of a job's history."""

    id: int
    event: str
    attempt: int
    at: datetime
    details: dict[str, Any] | None = None


class JobEvents(msgspec.Struct, kw_only=True):
    """GET /api/v1/jobs/{id}/events, oldest first."""

    job_id: str
    events: list[JobEvent]


class ThroughputMinute(msgspec.Struct, kw_only=True):
    """Jobs that finished in one minute, by final status."""

    minute: datetime
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    lost: int = 0


class RateLimit(msgspec.Struct, kw_only=True):
    """At most `count` starts in any window of `period_sec` seconds, across the fleet."""

    count: int
    period_sec: float


class QueueLimits(msgspec.Struct, kw_only=True):
    """GET/PUT /api/v1/queues/{queue}/limits; None means no such limit."""

    start: RateLimit | None = None
    per_rate_key: RateLimit | None = None


class QueueFairness(msgspec.Struct, kw_only=True):
    """GET/PUT /api/v1/queues/{queue}/fairness; `by` None: priority order only."""

    by: str | None = None


class Queue(msgspec.Struct, kw_only=True):
    """GET /api/v1/queues: one queue's depth, state and recent throughput."""

    queue: str
    paused: bool = False
    queued: int = 0
    running: int = 0
    oldest_queued_age_sec: float | None = None
    finished_last_hour: dict[str, int] = msgspec.field(default_factory=dict)
    throughput: list[ThroughputMinute] = msgspec.field(default_factory=list)
    limits: QueueLimits = msgspec.field(default_factory=QueueLimits)
    fairness: QueueFairness = msgspec.field(default_factory=QueueFairness)


class QueueList(msgspec.Struct, kw_only=True):
    """GET /api/v1/queues."""

    queues: list[Queue]


class Schedule(msgspec.Struct, kw_only=True):
    """A cron schedule and its job template (the server's Schedule)."""

    name: str
    cron: str
    timezone: str
    enabled: bool
    queue: str
    task: str
    lock_key: str
    schedule_id: str | None = None
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    priority: int | None = None
    max_attempts: int | None = None
    lease_ttl_sec: int | None = None
    source: str | None = None
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_job_id: str | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    upcoming: list[datetime] = msgspec.field(default_factory=list)


class SchedulePage(msgspec.Struct, kw_only=True):
    """GET /api/v1/schedules: schedules by name; `next_after` continues the listing."""

    schedules: list[Schedule]
    next_after: str | None = None


class ScheduleRun(msgspec.Struct, kw_only=True):
    """POST /api/v1/schedules/{name}/run: the job it created and the schedule."""

    job: TriggerResult
    schedule: Schedule


class WorkflowStepCreated(msgspec.Struct, kw_only=True):
    """One step of POST /api/v1/workflows' answer."""

    name: str
    job_id: str
    status: str


class WorkflowCreated(msgspec.Struct, kw_only=True):
    """POST /api/v1/workflows: the workflow and each step's job."""

    workflow_id: str
    name: str
    steps: list[WorkflowStepCreated]
    # False when the idempotency_key found the workflow an earlier request created.
    created: bool = True


class WorkflowStep(msgspec.Struct, kw_only=True):
    """One step of GET /api/v1/workflows/{id}."""

    name: str
    job_id: str
    status: str
    queue: str = ""
    task: str = ""
    depends_on: list[str] = msgspec.field(default_factory=list)
    run_after: str = "succeeded"
    attempt: int = 0
    max_attempts: int | None = None
    error: str | None = None
    canceled_by: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Workflow(msgspec.Struct, kw_only=True):
    """GET /api/v1/workflows/{id}: the workflow and every step's status."""

    workflow_id: str
    name: str
    status: str
    created_at: datetime | None = None
    canceled_at: datetime | None = None
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    steps: list[WorkflowStep] = msgspec.field(default_factory=list)


class WorkflowSummary(msgspec.Struct, kw_only=True):
    """One workflow of GET /api/v1/workflows."""

    workflow_id: str
    name: str
    status: str
    step_count: int = 0
    created_at: datetime | None = None
    canceled_at: datetime | None = None
    counts: dict[str, int] = msgspec.field(default_factory=dict)


class WorkflowPage(msgspec.Struct, kw_only=True):
    """GET /api/v1/workflows: one page, newest first."""

    workflows: list[WorkflowSummary]
    next_cursor: str | None = None


class WorkflowCanceled(msgspec.Struct, kw_only=True):
    """POST /api/v1/workflows/{id}/cancel."""

    workflow_id: str
    canceled: int
    cancel_requested: int
