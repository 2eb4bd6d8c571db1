"""Telling "the database could not be reached" apart from "the database refused this".

The one owner of that question: the API's 503s, the worker's retries (db_retry, the finish
writer's put-back, the runner's starts) and the lock session's reconnects all ask here.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# Errors raised on this side of the wire: the connection is gone, or never came.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    asyncpg.InterfaceError,  # "connection is closed" and other client-side losses
    InterfaceError,
    # Every pooled connection of this process is busy (the API's pool is small and has no
    # overflow): the database's capacity for this process is used up. Nothing was sent,
    # and the same request succeeds once a connection frees up, as with a refused login.
    PoolTimeoutError,
    OSError,  # refused, reset, unreachable, timed out
)

# What the server answers when it is going away, restarting, not yet up, or full. Read by
# SQLSTATE, which asyncpg's errors carry and SQLAlchemy's asyncpg dialect copies onto the
# error it raises in their place. Nothing was done; the same request succeeds later.
# - class 08, connection exception (asyncpg also uses 08003/08006 for a connection it lost);
# - class 53, insufficient resources: 53300 too many connections ("remaining connection
#   slots are reserved", "too many connections for role"), 53000, 53100 disk full,
#   53200 out of memory (or of lock table space), 53400 configuration limit exceeded;
# - 57P01 admin shutdown (fast or smart shutdown, pg_terminate_backend), 57P02 crash
#   shutdown (another backend crashed, or immediate shutdown), 57P03 cannot connect now
#   (the server is starting up, shutting down or in recovery);
# - 25P03 idle-in-transaction timeout: the server ended a session left inside a transaction
#   (app.db.connections.WORKER_IDLE_IN_TRANSACTION_MS); that transaction committed nothing.
_UNREACHABLE_SQLSTATE_CLASSES = ("08", "53")
_UNREACHABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25P03"})

# Of those, the ones after which this connection is certainly gone (the statement never
# ran to its end). A class 53 answer on a live connection is not one of them: that
# connection (and the locks its session holds) is still good.
_CONNECTION_GONE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.IdleInTransactionSessionTimeoutError,
    asyncpg.InterfaceError,
    OSError,
)


def unreachable_sqlstate(sqlstate: str | None) -> bool:
    """Whether a SQLSTATE says the server is unavailable, not that it refused the request."""
    if not sqlstate:
        return False
    return sqlstate[:2] in _UNREACHABLE_SQLSTATE_CLASSES or sqlstate in _UNREACHABLE_SQLSTATES


def database_unreachable(error: BaseException) -> bool:
    """Whether `error`, or what caused it, says the database could not be reached."""
    for current in _chain(error):
        if isinstance(current, _UNREACHABLE):
            return True
        if unreachable_sqlstate(_sqlstate(current)):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
    return False


# Class 40, transaction rollback: 40P01 deadlock detected, 40001 serialization failure. The
# release of dependents (app.db.dependency_functions) locks children in job_id order, but
# one statement ending many parents at once (a worker's batch of finishes) reaches them in
# the order of its rows, so two such statements can still meet in a deadlock, which
# PostgreSQL ends by rolling one back. Nothing was done; the same transaction run again
# succeeds.
_CONFLICT_SQLSTATE_CLASS = "40"


def transient_conflict(error: BaseException) -> bool:
    """Whether `error` says the transaction lost a deadlock or a serialization race."""
    return any(
        (_sqlstate(current) or "").startswith(_CONFLICT_SQLSTATE_CLASS) for current in _chain(error)
    )


def connection_gone(error: BaseException) -> bool:
    """Whether `error` says the connection it came from is lost (not merely turned away)."""
    return any(isinstance(current, _CONNECTION_GONE) for current in _chain(error))


def _chain(error: BaseException) -> list[BaseException]:
    """`error`, then what it wraps: SQLAlchemy's `.orig`, then each `__cause__`.

    Drivers raise their own error `from` the one below it; __context__ is not followed,
    it may be an unrelated error that was being handled.
    """
    seen: set[int] = set()
    chain: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            pending.append(current.orig)  # popped first: the driver's error comes next
    return chain


def _sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE an error carries: asyncpg's `sqlstate`, psycopg-style `pgcode`."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None
