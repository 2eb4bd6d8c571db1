"""How a queue is shown to users: its state, backlog and what it finished lately."""

from __future__ import annotations

from datetime import datetime

import msgspec

from app.domain.fairness import QueueFairness
from app.domain.rate_limits import QueueLimits


class FinishedCounts(msgspec.Struct, kw_only=True):
    """Jobs that ended with each final status."""

    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    lost: int = 0


class ThroughputMinute(msgspec.Struct, kw_only=True):
    """Jobs that ended within one minute, named by its start (UTC)."""

    minute: datetime
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    lost: int = 0


class Queue(msgspec.Struct, kw_only=True):
    """A queue as operators see it: state, backlog, and what it finished lately."""

    queue: str
    paused: bool
    paused_at: datetime | None
    queued: int
    running: int
    # Seconds since the longest-waiting queued job became due (its available_at);
    # None when no queued job is due yet.
    oldest_queued_age_sec: float | None
    finished_last_hour: FinishedCounts
    # One entry per minute of the last hour, oldest first, the current minute last.
    throughput: list[ThroughputMinute]
    # Live workers serving the queue (seen within the liveness window).
    consumers: int = 0
    # Jobs are queued and no live worker serves the queue: they wait until one does.
    unserved: bool = False
    # Its fleet-wide start-rate limits (docs/flow-control.md); none by default.
    limits: QueueLimits = msgspec.field(default_factory=QueueLimits)
    # Whether its jobs start round-robin over their partition_key (docs/flow-control.md).
    fairness: QueueFairness = msgspec.field(default_factory=QueueFairness)


class QueueList(msgspec.Struct, kw_only=True):
    """Every queue with live jobs, jobs finished in the last hour, or a pause state."""

    queues: list[Queue]
