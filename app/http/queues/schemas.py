"""The bodies of /api/v1/queues: the domain's queue types."""

from __future__ import annotations

from app.domain.queues import FinishedCounts, Queue, QueueList, ThroughputMinute

__all__ = ["FinishedCounts", "Queue", "QueueList", "ThroughputMinute"]
