"""How many jobs of a listing are in each state: the jobs page's counts (GET /api/v1/jobs/counts).

One pass over the rows the listing's filters select, counted per state (waiting: dependents
whose parents have not ended as they need). The queued jobs are
split three ways: due (first attempt, available now), scheduled (first attempt, available
later) and retrying (queued again after an attempt, whether its backoff has passed or not).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.jobs import filter_conditions
from app.db.models import DlJob
from app.db.sql_common import inline_constant
from app.domain.filters import JobFilter
from app.domain.states import FINAL_STATUSES, JobStatus
from app.domain.views import JobCounts

jobs = cast(Table, DlJob.__table__)


def _status(status: JobStatus) -> ColumnElement[bool]:
    # Inline: the partial index on live statuses is matched against constants only.
    return jobs.c.status == inline_constant(status.value)


def _counted(condition: ColumnElement[bool], name: str) -> Any:
    return func.count().filter(condition).label(name)


def counts_statement(filters: JobFilter) -> Any:
    """The counting query: one row, one column per state, and the next due time."""
    queued = _status(JobStatus.QUEUED)
    first_try = jobs.c.attempt == 0
    later = jobs.c.available_at > func.now()
    columns = [
        _counted(_status(JobStatus.WAITING), "waiting"),
        _counted(and_(queued, first_try, jobs.c.available_at <= func.now()), "due"),
        _counted(and_(queued, first_try, later), "scheduled"),
        _counted(and_(queued, jobs.c.attempt > 0), "retrying"),
        _counted(_status(JobStatus.RUNNING), "running"),
        *(_counted(_status(status), status.value) for status in sorted(FINAL_STATUSES)),
        func.min(jobs.c.available_at).filter(and_(queued, later)).label("next_due_at"),
    ]
    return select(*columns).select_from(jobs).where(*filter_conditions(filters))


async def count_jobs(session: AsyncSession, filters: JobFilter) -> JobCounts:
    """The jobs matching `filters`, counted per state."""
    row = (await session.execute(counts_statement(filters))).one()
    return JobCounts(**row._asdict())
