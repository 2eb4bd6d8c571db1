"""SQL behind the job gauges of GET /metrics: one statement per scrape, on the indexes.

Live jobs come from ix_dl_jobs_live_status (partial on queued and running, which holds
queue, status and available_at, so the scan need not read the table); jobs finished in
the last hour from ix_dl_jobs_status_finished (status, finished_at).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    false,
    func,
    literal_column,
    null,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJob
from app.domain.states import FINAL_STATUSES, JobStatus
from app.observability.metrics import JobGauges, QueueStatusCount

jobs = cast(Table, DlJob.__table__)
_HOUR: ColumnElement[Any] = literal_column("interval '1 hour'")


def _const(status: JobStatus) -> ColumnElement[Any]:
    """A status spelled inline: a partial index is matched against constants only, never
    against the bound parameters of a prepared statement's generic plan."""
    return literal_column(f"'{status.value}'")


_QUEUED = _const(JobStatus.QUEUED)
_LIVE = [_QUEUED, _const(JobStatus.RUNNING)]
_FINAL = [_const(status) for status in sorted(FINAL_STATUSES)]


async def job_gauges(session: AsyncSession) -> JobGauges:
    """Jobs by queue and status (live now, finished in the last hour), oldest queued age."""
    runnable = and_(jobs.c.status == _QUEUED, jobs.c.available_at <= func.now())
    live = (
        select(
            jobs.c.queue,
            jobs.c.status,
            func.count().label("jobs"),
            func.extract(
                "epoch", func.now() - func.min(jobs.c.available_at).filter(runnable)
            ).label("oldest_age_sec"),
            false().label("finished"),
        )
        .where(jobs.c.status.in_(_LIVE))
        .group_by(jobs.c.queue, jobs.c.status)
    )
    finished = (
        select(
            jobs.c.queue,
            jobs.c.status,
            func.count().label("jobs"),
            null().label("oldest_age_sec"),
            true().label("finished"),
        )
        .where(
            jobs.c.status.in_(_FINAL),
            jobs.c.finished_at >= func.now() - _HOUR,
        )
        .group_by(jobs.c.queue, jobs.c.status)
    )
    gauges = JobGauges()
    for row in await session.execute(live.union_all(finished)):
        count = QueueStatusCount(queue=row.queue, status=row.status, count=int(row.jobs))
        if row.finished:
            gauges.finished_last_hour.append(count)
        else:
            gauges.live.append(count)
            if row.oldest_age_sec is not None:
                gauges.oldest_queued_age_sec[row.queue] = max(0.0, float(row.oldest_age_sec))
    return gauges
