"""pgqueuer dispatch rows written inside the caller's SQLAlchemy transaction."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pgqueuer.domain.types import JobId
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.pgqueuer_schema import pgqueuer_settings, queries_for


class NotInTransactionError(RuntimeError):
    """pgqueuer was about to write outside the caller's transaction."""


async def _driver_connection(session: AsyncSession) -> Any:
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


async def enqueue_dispatch_in_session(
    session: AsyncSession,
    schema: str,
    *,
    queue: str,
    job_id: uuid.UUID,
    priority: int,
    delay: timedelta,
) -> int:
    """Insert the pgqueuer row that will wake a worker for `job_id`; returns its id."""
    queries = queries_for(await _driver_connection(session), pgqueuer_settings(schema))
    ids = await queries.enqueue(
        queue,
        job_id.bytes,
        priority=pgq_priority(priority),
        execute_after=delay if delay > timedelta(0) else None,
    )
    return int(ids[0])


async def withdraw_dispatch_in_session(session: AsyncSession, schema: str, pgq_job_id: int) -> None:
    """Remove a queued dispatch (logged as canceled) so it never starts."""
    queries = queries_for(await _driver_connection(session), pgqueuer_settings(schema))
    await queries.mark_job_as_cancelled([JobId(pgq_job_id)])


async def signal_cancel_in_session(session: AsyncSession, schema: str, pgq_job_id: int) -> None:
    """Tell the worker running this dispatch to look at its cancel flag now (on commit)."""
    queries = queries_for(await _driver_connection(session), pgqueuer_settings(schema))
    await queries.notify_job_cancellation([JobId(pgq_job_id)])
