"""Leader election among the workers of one database: one session advisory lock.

The lock lives on the plan's leader connection. A leader whose process hangs (SIGSTOP, a
blocked event loop) keeps that connection open, and so the lock: the session is given an
idle timeout, so the server closes it and frees the lock for another worker; a live leader
proves itself (`confirm`) more often than that.
"""

from __future__ import annotations

import asyncpg

from app.db import locks
from app.db.connections import connect_leader

# Any fixed number; every worker of one database competes for it.
LEADER_LOCK_ID = 0x646C5F6C65616472  # "dl_leadr"


async def stand(dsn: str, worker_id: str | None, idle_ms: int) -> asyncpg.Connection | None:
    """A connection that holds the leader lock, or None when another session holds it."""
    connection = await connect_leader(dsn, worker_id)
    try:
        # Set here, not at connect: a server without the setting must still elect a leader
        # (as a startup parameter it would refuse the login).
        await locks.limit_idle_session(connection, idle_ms)
        if await locks.try_lock_id(connection, LEADER_LOCK_ID):
            return connection
    except BaseException:
        connection.terminate()
        raise
    await connection.close()
    return None


async def confirm(connection: asyncpg.Connection) -> None:
    """Prove the leader's session is alive (and keep it from its idle timeout)."""
    await locks.ping(connection)
