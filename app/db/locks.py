"""Numbered session advisory locks (leader election) on a connection the caller keeps."""

from __future__ import annotations

import contextlib

import asyncpg

_TRY_LOCK_ID = "SELECT pg_try_advisory_lock($1)"


async def try_lock_id(connection: asyncpg.Connection, lock_id: int) -> bool:
    """Take a numbered lock if nobody holds it; it lasts as long as the session."""
    return bool(await connection.fetchval(_TRY_LOCK_ID, lock_id))


async def limit_idle_session(connection: asyncpg.Connection, idle_ms: int) -> None:
    """Have the server close this session once it idles `idle_ms` (PostgreSQL 14+; older
    servers keep it open, and a hung holder then keeps its lock until its process ends)."""
    with contextlib.suppress(asyncpg.PostgresError):
        await connection.execute(f"SET idle_session_timeout = {int(idle_ms)}")


async def ping(connection: asyncpg.Connection) -> None:
    """A trivial round trip: raises when the session (and so its locks) is gone."""
    await connection.execute("SELECT 1")
