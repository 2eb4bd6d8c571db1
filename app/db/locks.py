"""Numbered session advisory locks (leader election) on a session the caller keeps.

The session is reached through pgqueuer's `Driver` (fetch/execute, one statement at a
time), so a lock can live on a connection that pgqueuer also uses.
"""

from __future__ import annotations

import contextlib

import asyncpg
from pgqueuer.ports.driver import Driver


async def try_lock_id(session: Driver, lock_id: int) -> bool:
    """Take a numbered lock if nobody holds it; it lasts as long as the session."""
    rows = await session.fetch("SELECT pg_try_advisory_lock($1) AS won", lock_id)
    return bool(rows[0]["won"])


async def unlock_id(session: Driver, lock_id: int) -> None:
    """Give a numbered lock back (nothing happens when this session does not hold it)."""
    await session.execute("SELECT pg_advisory_unlock($1)", lock_id)


async def limit_idle_session(session: Driver, idle_ms: int) -> None:
    """Have the server close this session once it idles `idle_ms`; 0 lifts the limit.

    PostgreSQL 14+; older servers keep the session open, and a hung holder then keeps its
    lock until its process ends.
    """
    with contextlib.suppress(asyncpg.PostgresError):
        await session.execute(f"SET idle_session_timeout = {int(idle_ms)}")


async def ping(session: Driver) -> None:
    """A trivial round trip: raises when the session (and so its locks) is gone."""
    await session.execute("SELECT 1")
