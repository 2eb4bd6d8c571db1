"""SQL the retention service uses to delete old history in small batches.

Every statement deletes at most `limit` rows, picked through an index and locked with
SKIP LOCKED, so one batch is one short transaction that never waits for a row another
transaction holds. `ARRAY(SELECT ...)` keeps the delete itself a primary-key lookup: a
plain `IN (SELECT ...)` lets the planner choose a hash join over the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Interval,
    Table,
    bindparam,
    column,
    delete,
    exists,
    func,
    select,
    table,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import TableClause

from app.db.models import DlJob, DlJobEvent
from app.domain.states import FINAL_STATUSES

jobs = cast(Table, DlJob.__table__)
events = cast(Table, DlJobEvent.__table__)
# pgqueuer's history tables; unqualified so the engine's schema_translate_map places them.
pgqueuer_log = table("pgqueuer_log", column("id", BigInteger), column("created", DateTime))
pgqueuer_statistics = table(
    "pgqueuer_statistics", column("id", BigInteger), column("created", DateTime)
)

_FINAL = sorted(status.value for status in FINAL_STATUSES)


def _cutoff(retention: timedelta) -> ColumnElement[Any]:
    """`now() - retention` by the database clock (the transaction's start)."""
    return func.now() - bindparam("retention", retention, type_=Interval)


@dataclass(frozen=True)
class JobBatch:
    """What one batch of finished jobs took with it."""

    jobs: int
    events: int


async def delete_finished_jobs(session: AsyncSession, retention: timedelta, limit: int) -> JobBatch:
    """Delete up to `limit` jobs that finished before now() - retention, with their events.

    Only final statuses qualify: a queued or running job stays however old it is. The rows
    are locked before they are deleted and their status is checked again, so a job that is
    being retried (or otherwise changed) right now is skipped.
    """
    doomed = (
        select(jobs.c.job_id)
        # ix_dl_jobs_status_finished: (status, finished_at) WHERE finished_at IS NOT NULL.
        .where(jobs.c.status.in_(_FINAL), jobs.c.finished_at < _cutoff(retention))
        # The index order: a plain index scan that stops after `limit` rows, never a
        # sequential or bitmap scan that reads every old row first.
        .order_by(jobs.c.status, jobs.c.finished_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    gone = (
        delete(jobs)
        .where(
            jobs.c.job_id == func.any(func.array(doomed.scalar_subquery())),
            jobs.c.status.in_(_FINAL),
        )
        .returning(jobs.c.job_id)
        .cte("gone")
    )
    gone_events = (
        delete(events)
        # ix_dl_job_events_job_id_id: (job_id, id).
        .where(events.c.job_id == func.any(func.array(select(gone.c.job_id).scalar_subquery())))
        .returning(events.c.id)
        .cte("gone_events")
    )
    row = (
        await session.execute(
            select(
                select(func.count()).select_from(gone).scalar_subquery(),
                select(func.count()).select_from(gone_events).scalar_subquery(),
            )
        )
    ).one()
    return JobBatch(jobs=int(row[0]), events=int(row[1]))


@dataclass(frozen=True)
class OrphanWindow:
    """One step of the sweep for events whose job is gone."""

    scanned: int
    deleted: int
    # The highest event id looked at, and whether that event is older than the retention
    # (ids grow with time, so a young one means the old part of the table is behind us).
    last_id: int | None
    last_is_old: bool


async def delete_orphan_events(
    session: AsyncSession, retention: timedelta, after_id: int, limit: int
) -> OrphanWindow:
    """Look at the `limit` events after `after_id`; delete those older than the retention
    whose job no longer exists.

    Every event is written by the statement that writes its job, and retention deletes the
    two together, so orphans come only from jobs deleted by hand; the sweep finds those.
    """
    window = (
        select(events.c.id, events.c.job_id, events.c.at)
        .where(events.c.id > after_id)
        .order_by(events.c.id)
        .limit(limit)
        .cte("window")
    )
    job_gone = ~exists().where(jobs.c.job_id == window.c.job_id)
    doomed = select(window.c.id).where(window.c.at < _cutoff(retention), job_gone)
    gone = (
        delete(events)
        .where(events.c.id == func.any(func.array(doomed.scalar_subquery())))
        .returning(events.c.id)
        .cte("gone")
    )
    last = select(window.c.id, window.c.at).order_by(window.c.id.desc()).limit(1).subquery()
    row = (
        await session.execute(
            select(
                select(func.count()).select_from(window).scalar_subquery(),
                select(func.count()).select_from(gone).scalar_subquery(),
                select(last.c.id).scalar_subquery(),
                select(last.c.at < _cutoff(retention)).scalar_subquery(),
            )
        )
    ).one()
    return OrphanWindow(
        scanned=int(row[0]),
        deleted=int(row[1]),
        last_id=None if row[2] is None else int(row[2]),
        last_is_old=bool(row[3]),
    )


async def _delete_older(
    session: AsyncSession, history: TableClause, retention: timedelta, limit: int
) -> int:
    """Delete up to `limit` rows of a pgqueuer history table created before the cutoff."""
    doomed = (
        select(history.c.id)
        .where(history.c.created < _cutoff(retention))
        .order_by(history.c.created)  # oldest first, along the index on `created`
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        delete(history)
        .where(history.c.id == func.any(func.array(doomed.scalar_subquery())))
        .returning(history.c.id)
    )
    return len(result.all())


async def delete_old_pgqueuer_log(session: AsyncSession, retention: timedelta, limit: int) -> int:
    """Delete up to `limit` pgqueuer_log rows created before now() - retention.

    pgqueuer's own index on `created` finds them. Rows not yet folded into the statistics
    go too: the buckets they would add are as old, so retention would delete those anyway.
    """
    return await _delete_older(session, pgqueuer_log, retention, limit)


async def delete_old_pgqueuer_statistics(
    session: AsyncSession, retention: timedelta, limit: int
) -> int:
    """Delete up to `limit` pgqueuer_statistics rows (per-second buckets) older than that."""
    return await _delete_older(session, pgqueuer_statistics, retention, limit)
