"""PostgreSQL advisory locks, session-level, on a connection the caller keeps."""

from __future__ import annotations

from typing import Any

# hashtextextended gives a 64-bit key, so distinct lock_keys rarely share a lock.
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"
_TRY_LOCK_ID = "SELECT pg_try_advisory_lock($1)"


async def try_lock(connection: Any, key: str) -> bool:
    """Take the lock for `key` on this asyncpg connection if nobody holds it."""
    return bool(await connection.fetchval(_TRY_LOCK, key))


async def unlock(connection: Any, key: str) -> bool:
    """Release the lock for `key` held by this connection."""
    return bool(await connection.fetchval(_UNLOCK, key))


async def try_lock_id(connection: Any, lock_id: int) -> bool:
    """Take a numbered lock (leader election) if nobody holds it."""
    return bool(await connection.fetchval(_TRY_LOCK_ID, lock_id))
