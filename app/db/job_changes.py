"""Job change notifications: the channel migration 0006's trigger sends on, and its reads.

The trigger sends one notification per statement whose payload is the comma-separated ids
of the dl_jobs rows whose status, progress or cancel flag that statement changed. Listeners
read the rows themselves, so a payload never carries job data.

It only notifies while a connection named LISTENER_APPLICATION_NAME is open on the
database. A writer that looked before the listener connected sent nothing, so the listener
waits for such writers to end (wait_for_writers) before it reads the jobs it watches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg

from app.db.connections import JOB_WATCH_NAME, connect_job_watch
from app.db.sql_common import qualified

JOB_CHANGES_CHANNEL = "dl_job_changes"  # must match migrations/versions/0006
# The trigger notifies only while a connection with this name is open on the database.
# "dataloader job watch", given out by the connection plan (app.db.connections).
LISTENER_APPLICATION_NAME = JOB_WATCH_NAME  # must match migrations/versions/0006
WRITERS_POLL_SEC = 0.01

NotificationCallback = Callable[[Any, int, str, str], None]


def changed_job_ids(payload: str) -> list[str]:
    """The job ids of one notification, as PostgreSQL spells them (lower-case UUID text)."""
    return [part for part in payload.split(",") if part]


async def connect_listener(dsn: str, on_change: NotificationCallback) -> asyncpg.Connection:
    """A dedicated connection that LISTENs on the job changes channel.

    Never a pooled request connection: the LISTEN must outlive any request, and one
    connection must never await two things at once. Its name switches the trigger on.
    """
    connection = await connect_job_watch(dsn)
    try:
        await connection.add_listener(JOB_CHANGES_CHANNEL, on_change)
    except BaseException:
        connection.terminate()
        raise
    return connection


async def wait_for_writers(connection: asyncpg.Connection, schema: str, timeout_sec: float) -> bool:
    """Wait until every transaction that is writing dl_jobs now has ended.

    Called once the listener is connected: a writer that checked for listeners before
    that skipped its notification, and it holds its lock on dl_jobs until it commits.
    Returns False when `timeout_sec` passed first (a very long transaction).
    """
    table = qualified(schema, "dl_jobs")
    writers: list[str] = await connection.fetchval(
        """
        SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks
        WHERE locktype = 'relation' AND relation = to_regclass($1)
          AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()
        """,
        table,
    )
    deadline = asyncio.get_running_loop().time() + timeout_sec
    while writers:
        # Each transaction holds the lock on its own virtual id for as long as it runs.
        writers = await connection.fetchval(
            """
            SELECT coalesce(array_agg(virtualxid), '{}') FROM pg_locks
            WHERE locktype = 'virtualxid' AND virtualxid = ANY($1::text[])
            """,
            writers,
        )
        if writers and asyncio.get_running_loop().time() >= deadline:
            return False
        if writers:
            await asyncio.sleep(WRITERS_POLL_SEC)
    return True


async def ping_listener(connection: asyncpg.Connection) -> None:
    """A trivial round trip: fails when the listening connection is gone."""
    await connection.fetchval("SELECT 1")
