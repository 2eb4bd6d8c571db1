"""The job gauges GET /metrics shows, read in one short read-only transaction."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import job_stats
from app.domain.states import JobStatus
from app.observability.metrics import JobGauges, QueueStatusCount


async def read_job_gauges(sessions: async_sessionmaker[AsyncSession]) -> JobGauges:
    """Jobs by queue and status and the oldest queued age, as the database has them now.

    The same aggregates as the queues view (GET /api/v1/queues), shaped as gauges.
    """
    async with sessions() as session:
        live = await job_stats.live_counts(session)
        finished = await job_stats.finished_last_hour(session)
    gauges = JobGauges()
    for counts in live:
        for status, count in (
            (JobStatus.QUEUED, counts.queued),
            (JobStatus.RUNNING, counts.running),
        ):
            if count:
                gauges.live.append(QueueStatusCount(queue=counts.queue, status=status, count=count))
        if counts.oldest_due_age_sec is not None:
            gauges.oldest_queued_age_sec[counts.queue] = counts.oldest_due_age_sec
    by_status: Counter[tuple[str, str]] = Counter()
    for minute in finished:
        by_status[(minute.queue, minute.status)] += minute.count
    gauges.finished_last_hour.extend(
        QueueStatusCount(queue=queue, status=status, count=count)
        for (queue, status), count in by_status.items()
    )
    return gauges
