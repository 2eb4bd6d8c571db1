"""app.jobs.availability: which errors mean "the database could not be reached"."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.jobs.availability import connection_gone, database_unreachable, transient_conflict


def _wrapped(driver_error: BaseException) -> DBAPIError:
    """What SQLAlchemy's asyncpg dialect raises: its own error, `from` the driver's."""
    adapted = Exception(str(driver_error))
    adapted.__cause__ = driver_error
    return DBAPIError("SELECT 1", None, adapted)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another server"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
    ],
    ids=type,
)
def test_losing_the_server_is_unreachable(error: BaseException) -> None:
    assert database_unreachable(error)
    assert database_unreachable(_wrapped(error)), "also behind SQLAlchemy's wrapper"


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key value"),
        asyncpg.DataError("invalid input syntax for type uuid"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        ValueError("not a database error"),
    ],
    ids=type,
)
def test_refusals_are_not_unreachable(error: BaseException) -> None:
    """Sending these again would fail again: they are answers, not silence."""
    assert not database_unreachable(error)
    assert not database_unreachable(_wrapped(error))


def test_an_invalidated_connection_is_unreachable() -> None:
    error = IntegrityError("INSERT", None, Exception("whatever"), connection_invalidated=True)
    assert database_unreachable(error)


# Each SQLSTATE that means "unavailable, try again", with the asyncpg error the server's
# answer becomes. Class 53 is a full server: out of connection slots (53300, both "remaining
# connection slots are reserved" and "too many connections for role"), memory or disk.
UNAVAILABLE_ANSWERS = [
    asyncpg.InsufficientResourcesError("insufficient resources"),
    asyncpg.DiskFullError("could not extend file: No space left on device"),
    asyncpg.OutOfMemoryError("out of shared memory"),
    asyncpg.TooManyConnectionsError("remaining connection slots are reserved"),
    asyncpg.TooManyConnectionsError('too many connections for role "etl"'),
    asyncpg.ConfigurationLimitExceededError("configuration limit exceeded"),
    asyncpg.CannotConnectNowError("the database system is shutting down"),
]


def _dialect_error(driver_error: asyncpg.PostgresError) -> Exception:
    """SQLAlchemy's asyncpg dialect's own error for a server answer: the code copied over."""
    adapted = AsyncAdapt_asyncpg_dbapi.Error(f"{type(driver_error)}: {driver_error}")
    adapted.sqlstate = driver_error.sqlstate  # type: ignore[attr-defined]
    return adapted


@pytest.mark.parametrize("error", UNAVAILABLE_ANSWERS, ids=lambda e: e.sqlstate)
def test_unavailable_sqlstates_are_unreachable_raw(error: asyncpg.PostgresError) -> None:
    """As asyncpg raises them: at connect time (a refused login) and on a statement."""
    assert database_unreachable(error)


@pytest.mark.parametrize("error", UNAVAILABLE_ANSWERS, ids=lambda e: e.sqlstate)
@pytest.mark.parametrize("wrapper", [DBAPIError, OperationalError, InterfaceError])
def test_unavailable_sqlstates_are_unreachable_wrapped(
    error: asyncpg.PostgresError, wrapper: type[DBAPIError]
) -> None:
    """Behind SQLAlchemy: its error, `.orig` the dialect's error, caused by asyncpg's."""
    adapted = _dialect_error(error)
    adapted.__cause__ = error
    assert database_unreachable(wrapper("SELECT 1", None, adapted))


@pytest.mark.parametrize("error", UNAVAILABLE_ANSWERS, ids=lambda e: e.sqlstate)
def test_unavailable_sqlstates_are_unreachable_by_code_alone(
    error: asyncpg.PostgresError,
) -> None:
    """A wrapper that kept only the SQLSTATE (no driver error in the chain) still counts."""
    assert database_unreachable(DBAPIError("SELECT 1", None, _dialect_error(error)))


@pytest.mark.parametrize("sqlstate", ["53000", "53100", "53200", "53300", "53400", "57P03"])
def test_each_unavailable_sqlstate_is_listed(sqlstate: str) -> None:
    """Every code the brief names, whatever class a driver gives it."""

    class _Answer(Exception):
        pass

    answer = _Answer("turned away")
    answer.sqlstate = sqlstate  # type: ignore[attr-defined]
    assert database_unreachable(answer)
    assert database_unreachable(DBAPIError("SELECT 1", None, answer))


@pytest.mark.parametrize("sqlstate", ["22P02", "23505", "40001", "42P01", "57014", "55P03"])
def test_other_sqlstates_are_answers(sqlstate: str) -> None:
    """Bad data, conflicts, serialization, missing tables, cancels, lock timeouts."""

    class _Answer(Exception):
        pass

    answer = _Answer("refused")
    answer.sqlstate = sqlstate  # type: ignore[attr-defined]
    assert not database_unreachable(DBAPIError("SELECT 1", None, answer))


def test_an_exhausted_pool_is_unreachable() -> None:
    """QueuePool's checkout timeout: every connection this process may hold is busy."""
    error = PoolTimeoutError(
        "QueuePool limit of size 4 overflow 0 reached, connection timed out, timeout 30.00"
    )
    assert database_unreachable(error)


@pytest.mark.parametrize("error", UNAVAILABLE_ANSWERS[:-1], ids=lambda e: e.sqlstate)
def test_a_full_server_leaves_the_connection_usable(error: asyncpg.PostgresError) -> None:
    """A class 53 answer came over a live connection: its session and locks are intact."""
    assert not connection_gone(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=type,
)
def test_a_lost_connection_is_gone(error: BaseException) -> None:
    assert connection_gone(error)


def test_a_session_ended_for_idling_in_a_transaction_is_a_lost_connection() -> None:
    """25P03: the server ended a worker session left inside a transaction (a partition hit
    it mid-way, or the worker froze). Nothing of it was committed: retry on a new one."""
    error = asyncpg.IdleInTransactionSessionTimeoutError(
        "terminating connection due to idle-in-transaction timeout"
    )
    assert database_unreachable(error)
    assert connection_gone(error)
    adapted = _dialect_error(error)
    adapted.__cause__ = error
    assert database_unreachable(DBAPIError("SELECT 1", None, adapted))


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.SerializationError("could not serialize access"),
    ],
    ids=type,
)
def test_a_lost_deadlock_is_a_transient_conflict_not_unreachable(error: BaseException) -> None:
    assert transient_conflict(error)
    assert transient_conflict(_wrapped(error)), "also behind SQLAlchemy's wrapper"
    assert not database_unreachable(error)


def test_other_errors_are_not_transient_conflicts() -> None:
    assert not transient_conflict(asyncpg.UniqueViolationError("duplicate key value"))
    assert not transient_conflict(ValueError("not a database error"))
