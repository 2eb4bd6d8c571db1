"""All SQL about queues: pause state (dl_queues), parked dispatches, and per-queue counts.

A paused queue's queued pgqueuer rows are parked: their entrypoint becomes
`paused/<queue>`, which no worker serves (queue names cannot hold a `/`), so pgqueuer's
dequeue never reads them and a paused backlog of any size costs the workers nothing.
(Pushing execute_after far out is not enough: the dequeue walks the queue's
(entrypoint, priority, id) index and would read every parked row on each call.) Resume
gives the rows their entrypoint back; their execute_after never changed. Every statement
that creates a dispatch parks it when its queue is paused (app.db.job_inserts,
app.db.dispatch), reading the dl_queues row FOR SHARE: a resume's row update then waits
for that transaction and sees its dispatch afterwards. Functions flush, never commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Table,
    Text,
    case,
    column,
    func,
    literal_column,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJob, DlQueue
from app.db.pgqueuer_schema import pgqueuer_settings
from app.domain.states import FINAL_STATUSES, JobStatus

# Queue names are letters, digits and . _ : - (app.domain.spec.QueueName), so a parked
# entrypoint can never be a served queue.
PARKED_PREFIX = "paused/"


def parked_entrypoint(queue: str) -> str:
    """The pgqueuer entrypoint of a paused queue's dispatches."""
    return PARKED_PREFIX + queue


jobs = cast(Table, DlJob.__table__)
queues = cast(Table, DlQueue.__table__)
# pgqueuer's job table; unqualified so the engine's schema_translate_map places it.
pgqueuer_jobs = table(
    "pgqueuer",
    column("id", BigInteger),
    column("entrypoint", Text),
    column("status"),
)

THROUGHPUT_MINUTES = 60
_HOUR: ColumnElement[Any] = literal_column("interval '1 hour'")


def _const(value: str) -> ColumnElement[Any]:
    """An inline constant: partial indexes are only matched against constants, never
    against bound parameters (a generic plan of a prepared statement would miss them)."""
    return literal_column("'" + value.replace("'", "''") + "'")


_QUEUED = _const(JobStatus.QUEUED.value)
_RUNNING = _const(JobStatus.RUNNING.value)
_FINAL = [_const(status.value) for status in sorted(FINAL_STATUSES)]


@dataclass(frozen=True)
class QueueState:
    """A dl_queues row."""

    queue: str
    paused: bool
    paused_at: datetime | None


@dataclass(frozen=True)
class LiveCounts:
    """Queued and running jobs of one queue, and when its oldest due job became due."""

    queue: str
    queued: int
    running: int
    oldest_due_at: datetime | None


@dataclass(frozen=True)
class FinishedCount:
    """Jobs of one queue that ended with `status` within one minute (`minute`, its start)."""

    queue: str
    status: str
    minute: datetime
    count: int


async def pause_in_session(session: AsyncSession, queue: str) -> QueueState:
    """Mark the queue paused (its row locked until commit); paused_at keeps the first pause."""
    statement = (
        insert(queues)
        .values(queue=queue, paused=True, paused_at=func.now(), updated_at=func.now())
        .on_conflict_do_update(
            index_elements=[queues.c.queue],
            set_={
                "paused": True,
                "paused_at": case((queues.c.paused, queues.c.paused_at), else_=func.now()),
                "updated_at": func.now(),
            },
        )
        .returning(queues.c.queue, queues.c.paused, queues.c.paused_at)
    )
    row = (await session.execute(statement)).one()
    return QueueState(**row._asdict())


async def resume_in_session(session: AsyncSession, queue: str) -> None:
    """Mark the queue running again (a queue without a row was never paused).

    The row update waits for every transaction that read the row as paused (FOR SHARE),
    so the dispatches those transactions parked are visible to unpark_dispatches.
    """
    await session.execute(
        update(queues)
        .where(queues.c.queue == queue)
        .values(paused=False, paused_at=None, updated_at=func.now())
    )


async def park_dispatches(session: AsyncSession, queue: str) -> int:
    """Move the queue's queued pgqueuer rows out of every worker's sight; how many moved."""
    return await _move_queued(session, queue, parked_entrypoint(queue))


async def unpark_dispatches(session: AsyncSession, queue: str) -> int:
    """Give the queue's parked pgqueuer rows back to its workers; how many moved.

    Each keeps its execute_after (its job's available_at, or when it was made), so a job
    due meanwhile runs at once and a later one at its time.
    """
    return await _move_queued(session, parked_entrypoint(queue), queue)


async def _move_queued(session: AsyncSession, source: str, target: str) -> int:
    result = await session.execute(
        update(pgqueuer_jobs)
        .where(pgqueuer_jobs.c.entrypoint == source, pgqueuer_jobs.c.status == _QUEUED)
        .values(entrypoint=target)
    )
    return int(cast(Any, result).rowcount)


async def wake_workers(session: AsyncSession, schema: str) -> None:
    """Send pgqueuer's table-changed notice on commit.

    pgqueuer's trigger is statement-level, where OLD and NEW are NULL, so an UPDATE of its
    table notifies nobody: workers waiting on an empty queue would only look at their next
    poll.
    """
    channel = pgqueuer_settings(schema).channel
    payload = {
        "channel": channel,
        "operation": "update",
        "table": "pgqueuer",
        "type": "table_changed_event",
    }
    await session.execute(
        text(
            "SELECT pg_notify(:channel, (CAST(:payload AS jsonb)"
            " || jsonb_build_object('sent_at', now()))::text)"
        ),
        {"channel": channel, "payload": json.dumps(payload)},
    )


async def queue_states(session: AsyncSession, queue: str | None = None) -> list[QueueState]:
    """dl_queues rows (the table is tiny: one row per queue an operator ever paused)."""
    statement = select(queues.c.queue, queues.c.paused, queues.c.paused_at)
    if queue is not None:
        statement = statement.where(queues.c.queue == queue)
    return [QueueState(**row._asdict()) for row in await session.execute(statement)]


async def live_counts(session: AsyncSession, queue: str | None = None) -> list[LiveCounts]:
    """Queued and running jobs per queue, from the live-status partial index alone."""
    is_queued = jobs.c.status == _QUEUED
    statement = (
        select(
            jobs.c.queue,
            func.count().filter(is_queued).label("queued"),
            func.count().filter(jobs.c.status == _RUNNING).label("running"),
            func.min(jobs.c.available_at)
            .filter(is_queued, jobs.c.available_at <= func.now())
            .label("oldest_due_at"),
        )
        .where(jobs.c.status.in_([_QUEUED, _RUNNING]))
        .group_by(jobs.c.queue)
    )
    if queue is not None:
        statement = statement.where(jobs.c.queue == queue)
    return [LiveCounts(**row._asdict()) for row in await session.execute(statement)]


async def finished_last_hour(
    session: AsyncSession, queue: str | None = None
) -> list[FinishedCount]:
    """Jobs that ended in the last hour, per queue, final status and minute.

    Reads only the last hour of the (status, finished_at) index, whatever the history's size.
    """
    minute = func.date_trunc("minute", jobs.c.finished_at)
    statement = (
        select(
            jobs.c.queue,
            jobs.c.status,
            minute.label("minute"),
            func.count().label("count"),
        )
        .where(jobs.c.status.in_(_FINAL), jobs.c.finished_at >= func.now() - _HOUR)
        .group_by(jobs.c.queue, jobs.c.status, minute)
    )
    if queue is not None:
        statement = statement.where(jobs.c.queue == queue)
    return [FinishedCount(**row._asdict()) for row in await session.execute(statement)]


async def db_now(session: AsyncSession) -> datetime:
    """The database clock at the start of the transaction (`now()`)."""
    value: datetime = (await session.execute(select(func.now()))).scalar_one()
    return value
