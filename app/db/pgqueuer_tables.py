"""pgqueuer dispatch rows (their one builder) and cancel signals, in the caller's transaction.

Every statement that gives workers something to run also sends, in that statement, one
notice on DISPATCH_CHANNEL with how many dispatches each queue got; the worker's wake gate
(app.jobs.wake_gate) wakes only as many workers as there are jobs, instead of every idle
worker waking on pgqueuer's own table-changed notice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import asyncpg
from pgqueuer.domain.types import JobId
from sqlalchemy import (
    BigInteger,
    column,
    delete,
    func,
    select,
    table,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import DateTime, Text

from app.db import fairness
from app.db.pgqueuer_schema import pgqueuer_settings, queries_for
from app.db.sql_common import cutoff, inline_constant, qualified
from app.domain.states import JobStatus

# Queue names are letters, digits and . _ : - (app.domain.spec.QueueName), so a parked
# entrypoint can never be a served queue.
PARKED_PREFIX = "paused/"
# pgqueuer's job table; unqualified so the engine's schema_translate_map places it.
pgqueuer_jobs = table(
    "pgqueuer", column("id", BigInteger), column("entrypoint", Text), column("status")
)
# Inline, so the partial index on queued rows matches (bound parameters would not).
_QUEUED = inline_constant(JobStatus.QUEUED.value)
# Our notice channel: {"kind": "dispatch", "id": <first dispatch id>, "queues": {queue: n},
# "due": {queue: n due now}} when dispatches are written, {"kind": "started", "queues":
# {queue: n}} when a worker's start statement answered picked dispatches. Notices live per
# database, like pgqueuer's own channel.
DISPATCH_CHANNEL = "dl_dispatch"
# NOTIFY refuses payloads of 8000 bytes or more and would fail the enqueue; a dispatch to
# very many queues at once says `overflow` instead, and every worker then looks once.
MAX_NOTICE_BYTES = 7900
# A statement using dispatch_ctes must name this in its FROM (see there).
ANNOUNCED = "(SELECT count(*) FROM announced) AS announced"


class NotInTransactionError(RuntimeError):
    """pgqueuer was about to write outside the caller's transaction."""


async def _driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session, which must already be in a transaction.

    SQLAlchemy's asyncpg dialect begins the database transaction lazily on its first
    statement; a pgqueuer write issued before that would autocommit and survive a rollback.
    """
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    if raw is None or not raw.is_in_transaction():
        raise NotInTransactionError("write through the session before enqueueing")
    return raw


def dispatch_ctes(schema: str, source: str, *, fair: bool = True) -> str:
    """The CTEs that write one pgqueuer row (and its `queued` log row) per row of `source`.

    The only builder of dispatch rows: new jobs and redispatches both use it. `source` names
    an earlier CTE with columns pgq_job_id (taken from pgqueuer's sequence), job_id, queue,
    priority (ours: lower runs first), available_at and, with `fair`, fair_round (NULL
    outside a fair queue: app.db.fairness). `fair=False` renders the statements dl_enqueue
    releases before fair queues were installed with. Rows are written as pgqueuer's own
    enqueue writes them, so pgqueuer cannot tell them apart. A paused queue's dispatches are
    parked (see PARKED_PREFIX below); its dl_queues row is read FOR SHARE, so a concurrent
    resume waits for this transaction and then sees the dispatch.

    The `announced` CTE sends the dispatch notice. A SELECT in WITH runs only when the
    statement reads it, so the statement's final SELECT must list ANNOUNCED in its FROM.
    """
    pgq = pgqueuer_settings(schema).qualified
    queues = qualified(schema, "dl_queues")
    # Without `fair`, the text those releases were rendered from, to the byte.
    fair_bases, s, rows, priority = "", "", source, "-priority"
    if fair:
        fair_bases, s = fairness.bases_cte(schema, source), "s."
        rows = f"{source} s LEFT JOIN fair_bases b ON b.queue = s.queue"
        priority = fairness.dispatch_priority_sql("s.priority", "s.fair_round", "b.fair_base")
    return f"""{fair_bases}
        paused AS MATERIALIZED (
            -- dl_queues is tiny and holds a row only for queues ever paused.
            SELECT q.queue FROM {queues} q
            WHERE q.queue IN (SELECT queue FROM {source}) AND q.paused
            FOR SHARE
        ),
        dispatched AS (
            -- pgqueuer runs higher priorities first; ours run lower numbers first.
            INSERT INTO {pgq.queue_table} (id, priority, entrypoint, payload, execute_after, status)
            SELECT {s}pgq_job_id, {priority},
                   CASE WHEN {s}queue IN (SELECT queue FROM paused)
                        THEN '{PARKED_PREFIX}' || {s}queue ELSE {s}queue END,
                   uuid_send({s}job_id), greatest({s}available_at, now()), 'queued'
            FROM {rows}
            RETURNING id, entrypoint, priority, execute_after
        ),
        dispatch_logged AS (
            INSERT INTO {pgq.queue_table_log} (job_id, status, entrypoint, priority)
            SELECT id, 'queued', entrypoint, priority FROM dispatched
        ),
        announced AS MATERIALIZED (
            -- One notice per statement, sent on commit. A parked entrypoint is counted under
            -- its parked name, which no worker serves. `id` names the notice: the workers
            -- rank themselves for it (app.jobs.wake_gate).
            SELECT pg_notify('{DISPATCH_CHANNEL}',
                CASE WHEN octet_length(payload) <= {MAX_NOTICE_BYTES} THEN payload
                     ELSE json_build_object('kind', 'dispatch', 'id', first_id,
                                            'overflow', true)::text END)
            FROM (
                SELECT min(first_id) AS first_id,
                       json_build_object('kind', 'dispatch', 'id', min(first_id),
                                         'queues', json_object_agg(entrypoint, n),
                                         'due', json_object_agg(entrypoint, due))::text AS payload
                FROM (
                    SELECT entrypoint, count(*) AS n, min(id) AS first_id,
                           count(*) FILTER (WHERE execute_after <= now()) AS due
                    FROM dispatched GROUP BY entrypoint
                ) per_queue
                HAVING count(*) > 0
            ) notice
        )"""


def next_dispatch_id(schema: str) -> str:
    """SQL for the next id of pgqueuer's job table, as its own enqueue would take it."""
    pgq = pgqueuer_settings(schema).qualified
    return f"nextval((SELECT pg_get_serial_sequence('{pgq.queue_table}', 'id')))"


async def withdraw_dispatch_in_session(session: AsyncSession, schema: str, pgq_job_id: int) -> None:
    """Remove a queued dispatch (logged as canceled) so it never starts."""
    queries = queries_for(await _driver_connection(session), pgqueuer_settings(schema))
    await queries.mark_job_as_cancelled([JobId(pgq_job_id)])


async def withdraw_dispatches_in_session(
    session: AsyncSession, schema: str, pgq_job_ids: list[int]
) -> None:
    """withdraw_dispatch_in_session() for many dispatches in one call."""
    if pgq_job_ids:
        queries = queries_for(await _driver_connection(session), pgqueuer_settings(schema))
        await queries.mark_job_as_cancelled([JobId(pgq_job_id) for pgq_job_id in pgq_job_ids])


async def signal_cancel_in_session(session: AsyncSession, schema: str, pgq_job_id: int) -> None:
    """Tell the worker running this dispatch to look at its cancel flag now (on commit)."""
    queries = queries_for(await _driver_connection(session), pgqueuer_settings(schema))
    await queries.notify_job_cancellation([JobId(pgq_job_id)])


# --- parking: a paused queue's dispatches --------------------------------------------------
#
# A paused queue's queued pgqueuer rows are parked: their entrypoint becomes `paused/<queue>`,
# which no worker serves (queue names cannot hold a `/`), so pgqueuer's dequeue never reads
# them and a paused backlog of any size costs the workers nothing. (Pushing execute_after far
# out is not enough: the dequeue walks the queue's (entrypoint, priority, id) index and would
# read every parked row on each call.) Resume gives the rows their entrypoint back; their
# execute_after never changed. Every new dispatch (dispatch_ctes) is parked when its queue
# is paused, reading the dl_queues row FOR SHARE: a resume's row update then waits for that
# transaction and sees its dispatch afterwards.


def parked_entrypoint(queue: str) -> str:
    """The pgqueuer entrypoint of a paused queue's dispatches."""
    return PARKED_PREFIX + queue


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


async def wake_workers(session: AsyncSession, queue: str, count: int) -> None:
    """Tell the workers, on commit, that `count` dispatches of `queue` can run now.

    Resume moves rows with an UPDATE, on which pgqueuer's trigger sends nothing; this is the
    dispatch notice a new job's statement sends, so as many workers wake as there are jobs.
    """
    await session.execute(
        text(
            "SELECT pg_notify(:channel, json_build_object('kind', 'dispatch',"
            " 'id', txid_current(),"
            " 'queues', json_build_object(CAST(:queue AS text), CAST(:count AS int)),"
            " 'due', json_build_object(CAST(:queue AS text), CAST(:count AS int)))::text)"
        ),
        {"channel": DISPATCH_CHANNEL, "queue": queue, "count": count},
    )


# --- retention: pgqueuer never prunes its history tables -----------------------------------
#
# Every statement deletes at most `limit` rows, picked through an index and locked with SKIP
# LOCKED, so one batch is one short transaction that never waits for a row another
# transaction holds. `ARRAY(SELECT ...)` keeps the delete itself a primary-key lookup: a
# plain `IN (SELECT ...)` lets the planner choose a hash join over the whole table.


# pgqueuer's history tables; unqualified so the engine's schema_translate_map places them.
pgqueuer_log = table("pgqueuer_log", column("id", BigInteger), column("created", DateTime))
pgqueuer_statistics = table(
    "pgqueuer_statistics", column("id", BigInteger), column("created", DateTime)
)


async def _delete_older(
    session: AsyncSession, history: TableClause, retention: timedelta, limit: int
) -> int:
    """Delete up to `limit` rows of a pgqueuer history table created before the cutoff."""
    doomed = (
        select(history.c.id)
        .where(history.c.created < cutoff(retention))
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
