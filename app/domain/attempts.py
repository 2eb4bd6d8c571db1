"""What passes between the worker and the job manager about one attempt: starts and finishes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.domain.states import JobEvent, JobStatus


@dataclass(frozen=True)
class PostponedJob:
    """A queued job a worker held back: what its new dispatch needs, and when it is due."""

    queue: str
    priority: int
    attempt: int
    available_at: datetime
    # From now (the database's) until available_at.
    wait: timedelta


@dataclass(frozen=True)
class StartedAttempt:
    """What a runner needs to know about the attempt it just started."""

    job_id: uuid.UUID
    queue: str
    task: str
    args: dict[str, Any]
    lock_key: str
    priority: int
    attempt: int
    max_attempts: int
    lease_ttl_sec: int
    # The W3C trace context its trigger stored (docs/tracing.md); None when untraced.
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True)
class StartRequest:
    """A pgqueuer dispatch asking to start its job."""

    job_id: uuid.UUID
    pgq_job_id: int
    # Asked again after waiting in the worker for its rate bucket: it already has its place
    # in the bucket's line (app.db.rate_limit_function).
    waited_for_rate: bool = False


@dataclass(frozen=True)
class StartAnswer:
    """What the start statement did with one request.

    `attempt` is set when the job started (its lock is now held by this session).
    `paused` means its queue is paused: no lock was tried, the job waits for the resume.
    `trigger_open` means a coalescing trigger that joined the job has not committed yet: no
    lock was tried, the job waits so that it runs after that trigger's transaction.
    `lock_key` without an attempt and with `lock_busy` means another holder has the key;
    `got_lock` without an attempt means the lock was taken but the job changed meanwhile,
    or its concurrency group was full (`group_full`), or a rate limit of its queue held it
    back (`rate_limited`), so the caller must give the lock (and a `slot` it took) back.
    A request with no answer was not startable.
    `pgq_job_id` is the dispatch answered: the job's current one, the only one that may start it.
    """

    job_id: uuid.UUID
    pgq_job_id: int
    lock_key: str
    got_lock: bool
    attempt: StartedAttempt | None
    paused: bool = False
    trigger_open: bool = False
    # The job's concurrency group, and the slot of it this session took (None when the
    # job has no group or every slot it may use was taken).
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    slot: str | None = None
    # Held back by a rate limit of its queue (app.db.rate_limit_function): which one
    # (`limited_by`, a RateScope) and from when the job may try again.
    queue: str = ""
    rate_key: str | None = None
    rate_limited: bool = False
    # The bucket's clock when it decided (the time a start is counted at).
    decided_at: datetime | None = None
    retry_at: datetime | None = None
    limited_by: str | None = None

    @property
    def lock_busy(self) -> bool:
        return not self.got_lock and not self.paused and not self.trigger_open

    @property
    def rate_wait_sec(self) -> float | None:
        """For a rate-limited answer, how long until its bucket said to come back."""
        if not self.rate_limited or self.retry_at is None or self.decided_at is None:
            return None
        return max(0.0, (self.retry_at - self.decided_at).total_seconds())

    @property
    def group_full(self) -> bool:
        """It got its lock_key lock but its concurrency group had no free slot for it."""
        return self.got_lock and self.concurrency_key is not None and self.slot is None


@dataclass(frozen=True)
class FinishRequest:
    """A running attempt's final write."""

    job_id: uuid.UUID
    attempt: int
    status: JobStatus
    event: JobEvent
    progress: dict[str, Any] | None = None
    error: str | None = None
    details: dict[str, Any] | None = None
    # What the pipeline returned, as checked JSON text (app.pipelines.results); None: none.
    result_json: str | None = None


@dataclass(frozen=True)
class RequeueRequest:
    """A running attempt going back to queued: retried, interrupted, or its lease expired.

    With `count_attempt` False the attempt is given back (an interrupt by shutdown).
    """

    job_id: uuid.UUID
    attempt: int
    event: JobEvent
    delay_sec: float
    count_attempt: bool
    error: str | None = None
    details: dict[str, Any] | None = None
