"""Telling "the database could not be reached" apart from "the database refused this"."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# The server is going away, restarting or not yet up, or the connection is gone. A statement
# that failed this way may be sent again once the database is back.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # 08xxx: connection exceptions
    asyncpg.AdminShutdownError,  # 57P01: shutdown (fast or smart) or pg_terminate_backend
    asyncpg.CrashShutdownError,  # 57P02: another backend crashed, or immediate shutdown
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting up or in recovery
    asyncpg.InterfaceError,  # "connection is closed" and other client-side losses
    InterfaceError,
    PoolTimeoutError,
    OSError,  # refused, reset, unreachable, timed out
)


def database_unreachable(error: BaseException) -> bool:
    """Whether `error`, or what caused it, says the database could not be reached."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNREACHABLE):
            return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            if isinstance(current.orig, BaseException) and database_unreachable(current.orig):
                return True
        # Drivers raise their own error `from` the one below it; __context__ is not
        # followed, it may be an unrelated error that was being handled.
        current = current.__cause__
    return False
