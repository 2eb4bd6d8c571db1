"""Job statuses and lifecycle events."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life; the last four are final."""

    # Depends on jobs that have not all ended as it needs (docs/workflows.md): no dispatch
    # yet; it becomes queued when they have, or canceled when one of them failed.
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    LOST = "lost"

    @property
    def is_final(self) -> bool:
        """Whether the job can no longer change (short of an explicit retry)."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.LOST}
)
# The final statuses an operator may run again (POST /api/v1/jobs/{id}/retry).
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.LOST, JobStatus.CANCELED})
# The final statuses that are not a success: a dependent that needs its parent to succeed is
# canceled when the parent ends in one of them.
UNSUCCESSFUL_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELED, JobStatus.LOST})


class JobEvent(StrEnum):
    """The kinds of rows written to dl_job_events, one per lifecycle transition."""

    QUEUED = "queued"
    # Created (or made to run again) while a job it depends on has not ended as it needs.
    WAITING = "waiting"
    STARTED = "started"
    LOCK_BUSY = "lock_busy"
    # Its concurrency group already ran concurrency_limit jobs: not started, waits.
    CONCURRENCY_BUSY = "concurrency_busy"
    # A rate limit of its queue had no start left for it: not started, due again later.
    RATE_LIMITED = "rate_limited"
    # Picked just as its queue was paused: not started, waits for the resume.
    QUEUE_PAUSED = "queue_paused"
    # A coalescing trigger joined this queued job instead of adding another.
    COALESCED = "coalesced"
    # Picked while a trigger that joined it had not committed: not started, waits, so it
    # runs after what that trigger's transaction wrote.
    TRIGGER_OPEN = "trigger_open"
    PROGRESS = "progress"
    SUCCEEDED = "succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELED = "canceled"
    LEASE_EXPIRED = "lease_expired"
    LOST = "lost"
    REQUEUED = "requeued"
    REDISPATCHED = "redispatched"
    INTERRUPTED = "interrupted"
    RETRIED = "retried"
