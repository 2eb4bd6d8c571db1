"""The bodies of /api/v1/queues: the domain's queue types."""

from __future__ import annotations

from app.domain.fairness import QueueFairness
from app.domain.queues import FinishedCounts, Queue, QueueList, ThroughputMinute
from app.domain.rate_limits import QueueLimits, RateLimit

__all__ = [
    "FinishedCounts",
    "Queue",
    "QueueFairness",
    "QueueLimits",
    "QueueList",
    "RateLimit",
    "ThroughputMinute",
]
