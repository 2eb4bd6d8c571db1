"""Fleet-wide start-rate limits of a queue: what an operator sets and what a job waits for.

A queue may carry two limits, each "at most `count` starts per `period_sec`", counted over
every worker and host together by the database (app.db.rate_limit_function):
- `start`: the queue's starts, all jobs together;
- `per_rate_key`: the starts of the jobs naming one `rate_key` (e.g. the partner they call),
  for each rate_key separately.
A start counts at the moment the database let it begin; any window of `period_sec` holds at
most `count` of them (docs/flow-control.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

# Each start within a period is one entry the database keeps for the window: the bound keeps
# a bucket's row small whatever the traffic.
MAX_RATE_COUNT = 10_000
MIN_RATE_PERIOD_SEC = 0.01
MAX_RATE_PERIOD_SEC = 86_400.0

RateCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_RATE_COUNT)]
RatePeriod = Annotated[float, msgspec.Meta(ge=MIN_RATE_PERIOD_SEC, le=MAX_RATE_PERIOD_SEC)]


class RateLimit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """At most `count` starts in any window of `period_sec` seconds."""

    count: RateCount
    period_sec: RatePeriod


class QueueLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A queue's rate limits; None (or absent) means no such limit."""

    start: RateLimit | None = None
    per_rate_key: RateLimit | None = None


class RateScope(StrEnum):
    """Which of a queue's limits held a job back."""

    QUEUE = "queue"
    RATE_KEY = "rate_key"


class WaitReason(StrEnum):
    """Why a queued job that a worker picked did not start: dl_jobs.waiting_for.

    Set when a worker postpones the job, cleared when it starts (or is requeued); the job's
    available_at says from when it may start.
    """

    LOCK_KEY = "lock_key"
    CONCURRENCY_GROUP = "concurrency_group"
    RATE_LIMIT = "rate_limit"
    QUEUE_PAUSED = "queue_paused"
    # A coalescing trigger that joined it has not committed yet (app.db.coalescing).
    TRIGGER_OPEN = "trigger_open"
