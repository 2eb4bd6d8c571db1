"""pgqueuer dispatch rows written inside the caller's SQLAlchemy transaction."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import cache

import asyncpg
from pgqueuer.domain.types import JobId
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import Integer, Interval, LargeBinary, Text

from app.db.pgqueuer_schema import pgqueuer_settings, queries_for
from app.db.queue_queries import parked_entrypoint


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


def pgq_priority(priority: int) -> int:
    """pgqueuer runs higher numbers first; ours run lower numbers first."""
    return -priority


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@cache
def _dispatch_statement(schema: str) -> TextClause:
    """One pgqueuer row and its `queued` log row, written as pgqueuer's own enqueue does.

    Parked (app.db.queue_queries) when the queue is paused; the dl_queues row is read FOR
    SHARE so a concurrent resume waits for this transaction and then sees the dispatch.
    """
    pgq = pgqueuer_settings(schema).qualified
    queues = f"{_quote_ident(schema)}.dl_queues"
    sql = f"""
        WITH paused AS MATERIALIZED (
            SELECT q.queue FROM {queues} q WHERE q.queue = :queue AND q.paused FOR SHARE
        ),
        dispatched AS (
            INSERT INTO {pgq.queue_table} (priority, entrypoint, payload, execute_after, status)
            SELECT :priority,
                   CASE WHEN EXISTS (SELECT FROM paused) THEN :parked ELSE :queue END,
                   :payload, now() + :delay, 'queued'
            RETURNING id, entrypoint, priority
        ),
        logged AS (
            INSERT INTO {pgq.queue_table_log} (job_id, status, entrypoint, priority)
            SELECT id, 'queued', entrypoint, priority FROM dispatched
        )
        SELECT id FROM dispatched
    """
    return text(sql).bindparams(
        bindparam("queue", type_=Text()),
        bindparam("parked", type_=Text()),
        bindparam("priority", type_=Integer()),
        bindparam("payload", type_=LargeBinary()),
        bindparam("delay", type_=Interval()),
    )


async def enqueue_dispatch_in_session(
    session: AsyncSession,
    schema: str,
    *,
    queue: str,
    job_id: uuid.UUID,
    priority: int,
    delay: timedelta,
) -> int:
    """Insert the pgqueuer row that will wake a worker for `job_id`; returns its id.

    The row runs after `delay`; while the queue is paused it is parked until the resume.
    """
    result = await session.execute(
        _dispatch_statement(schema),
        {
            "queue": queue,
            "parked": parked_entrypoint(queue),
            "priority": pgq_priority(priority),
            "payload": job_id.bytes,
            "delay": max(delay, timedelta(0)),
        },
    )
    return int(result.scalar_one())


async def withdraw_dispatch_in_session(session: AsyncSession, schema: str, pgq_job_id: int) -> None:
    """Remove a queued dispatch (logged as canceled) so it never starts."""
    queries = queries_for(await _driver_connection(session), pgqueuer_settings(schema))
    await queries.mark_job_as_cancelled([JobId(pgq_job_id)])


async def signal_cancel_in_session(session: AsyncSession, schema: str, pgq_job_id: int) -> None:
    """Tell the worker running this dispatch to look at its cancel flag now (on commit)."""
    queries = queries_for(await _driver_connection(session), pgqueuer_settings(schema))
    await queries.notify_job_cancellation([JobId(pgq_job_id)])
