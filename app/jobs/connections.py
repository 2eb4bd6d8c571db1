"""The worker's database handles, opened from the connection plan (app.db.connections).

The worker never imports app.db: it gets its pools (as session factories), its direct
connections and pgqueuer's query object here. Each keeps the plan's purpose and name.
"""

from __future__ import annotations

import contextlib
from contextlib import AsyncExitStack

import asyncpg
from pgqueuer.adapters.persistence.qb import (
    QueryBuilderEnvironment,
    QueryQueueBuilder,
    QuerySchedulerBuilder,
)
from pgqueuer.adapters.persistence.queries import Queries
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.connections import (
    connect_finish_writer,
    connect_lock_session,
    connect_pgqueuer,
    worker_pool,
)
from app.db.engine import create_session_factory
from app.db.pgqueuer_schema import pgqueuer_settings
from app.jobs.wake_gate import GatedDriver, GatedQueries, WakeGate
from app.settings import Settings

__all__ = [
    "connect_finish_writer",
    "connect_lock_session",
    "pgqueuer_queries",
    "worker_sessions",
]


async def worker_sessions(
    stack: AsyncExitStack, settings: Settings, worker_id: str
) -> async_sessionmaker[AsyncSession]:
    """Sessions on the worker pool (heartbeats, requeues, postponements, maintenance);
    closed with `stack`."""
    engine = worker_pool(settings, worker_id)
    stack.push_async_callback(engine.dispose)
    return create_session_factory(engine)


async def pgqueuer_queries(
    stack: AsyncExitStack, settings: Settings, worker_id: str, gate: WakeGate
) -> Queries:
    """pgqueuer's queries on its own connection (its LISTEN and dequeues); closed with `stack`.

    Its driver wakes pgqueuer's loop only when `gate` says so (app.jobs.wake_gate).
    """
    connection = await connect_pgqueuer(settings.session_dsn, worker_id)
    stack.push_async_callback(_close_quietly, connection)
    db_settings = pgqueuer_settings(settings.pg_schema_queue)
    return GatedQueries(
        GatedDriver(connection, db_settings.channel, gate),
        qbe=QueryBuilderEnvironment(db_settings),
        qbq=QueryQueueBuilder(db_settings),
        qbs=QuerySchedulerBuilder(db_settings),
        gate=gate,
    )


async def _close_quietly(connection: asyncpg.Connection) -> None:
    """Close a connection that may already be gone with the server."""
    with contextlib.suppress(Exception):
        await connection.close(timeout=5)
