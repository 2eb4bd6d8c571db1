"""How a job is shown to users: the status answer, built from the dl_jobs row."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec


class Job(msgspec.Struct, kw_only=True):
    """Everything stored about a job that a user would want to see."""

    job_id: uuid.UUID
    status: str
    queue: str
    task: str
    args: dict[str, Any]
    lock_key: str
    concurrency_key: str | None
    concurrency_limit: int | None
    rate_key: str | None
    coalescing: bool
    idempotency_key: str | None
    partition_key: str | None
    priority: int
    available_at: datetime
    # Why a queued job a worker picked has not started: lock_key, concurrency_group,
    # rate_limit, queue_paused or trigger_open (app.domain.rate_limits.WaitReason); it may
    # start from available_at. None for a job not held back, and once it runs.
    waiting_for: str | None
    attempt: int
    max_attempts: int
    lease_ttl_sec: int
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    progress: dict[str, Any] | None
    error: str | None
    producer: str | None
    consumer_group: str | None
    worker_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # The jobs it depends on (docs/workflows.md), null for none; while one has not ended
    # as `run_after` needs, it is `waiting`.
    depends_on: list[uuid.UUID] | None = None
    run_after: str = "succeeded"
    # The parent whose end canceled it (a dependent whose parent failed), if one did.
    canceled_by: uuid.UUID | None = None
    # The workflow it is a step of, and its step's name; null for a job of its own.
    workflow_id: uuid.UUID | None = None
    step_name: str | None = None
    # What the pipeline returned (any JSON value), set when it succeeded; null before and
    # otherwise. Left out of listings (UNSET, not shown) unless they ask for it.
    result: Any | msgspec.UnsetType = msgspec.UNSET

    @classmethod
    def from_row(cls, row: object, *, with_result: bool = True) -> Job:
        """Copy the user-facing columns of a dl_jobs row (any object carrying them); its
        `result` only `with_result` (a listing's rows may not have loaded it)."""
        names = (n for n in cls.__struct_fields__ if with_result or n != "result")
        return cls(**{name: getattr(row, name) for name in names})

    def __post_init__(self) -> None:
        # A job canceled while it waited keeps the column; it no longer waits for anything.
        if self.status != "queued":
            self.waiting_for = None


class JobResult(msgspec.Struct, kw_only=True, frozen=True):
    """A job's status and what its pipeline returned (None unless it succeeded with a
    result): what a caller reading results by job id gets."""

    job_id: uuid.UUID
    status: str
    result: Any


class JobCreated(msgspec.Struct, kw_only=True):
    """The job a trigger resolved to, and whether this call created it.

    Only a coalescing trigger's answer has `coalesced`: true when it joined a job already
    queued, whose fields named in `differs` differ from the trigger's (the job keeps its own).
    """

    job_id: uuid.UUID
    status: str
    created: bool
    coalesced: bool | msgspec.UnsetType = msgspec.UNSET
    differs: list[str] | msgspec.UnsetType = msgspec.UNSET
    # Said only when there is something to say, e.g. that no live worker serves the queue.
    warnings: list[str] | msgspec.UnsetType = msgspec.UNSET


class JobPage(msgspec.Struct, kw_only=True):
    """One page of a job listing, newest first; `next_cursor` is None on the last page."""

    jobs: list[Job]
    next_cursor: str | None


class JobHistoryEvent(msgspec.Struct, kw_only=True):
    """One row of a job's history."""

    id: int
    event: str
    attempt: int
    at: datetime
    details: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: object) -> JobHistoryEvent:
        """Copy a dl_job_events row (any object carrying its columns)."""
        return cls(**{name: getattr(row, name) for name in cls.__struct_fields__})


class JobHistory(msgspec.Struct, kw_only=True):
    """A job's events, oldest first; pass `next_after` as `after` for the next page."""

    job_id: uuid.UUID
    events: list[JobHistoryEvent]
    next_after: int | None


class JobCounts(msgspec.Struct, kw_only=True):
    """How many jobs of a listing are in each state; queued jobs split three ways.

    waiting: depends on jobs that have not ended as it needs (no dispatch yet).
    due: first attempt, available now. scheduled: first attempt, `available_at` later.
    retrying: queued again after an attempt (its backoff may not have passed yet).
    `next_due_at` is the earliest `available_at` still ahead among the queued jobs.
    """

    waiting: int
    due: int
    scheduled: int
    retrying: int
    running: int
    succeeded: int
    failed: int
    canceled: int
    lost: int
    next_due_at: datetime | None


class JobActionResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a bulk cancel or retry did to one job.

    outcome: `canceled` / `retried` (done; `status` is the job's status now: a running job
    asked to cancel stays `running` until its next checkpoint), `not_found`, or `conflict`
    (its status does not allow it; `status` says which, `detail` why).
    """

    job_id: uuid.UUID
    outcome: str
    status: str | None = None
    detail: str | None = None


class JobActionResults(msgspec.Struct, kw_only=True):
    """One result per requested job, in request order."""

    results: list[JobActionResult]
