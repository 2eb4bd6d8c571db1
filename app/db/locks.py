"""PostgreSQL advisory locks, session-level, on a connection the caller keeps."""

from __future__ import annotations

from typing import Any

_TRY_LOCK_ID = "SELECT pg_try_advisory_lock($1)"


async def try_lock_id(connection: Any, lock_id: int) -> bool:
    """Take a numbered lock (leader election) if nobody holds it."""
    return bool(await connection.fetchval(_TRY_LOCK_ID, lock_id))
