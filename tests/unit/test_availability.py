"""app.jobs.availability: which errors mean "the database could not be reached"."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.jobs.availability import database_unreachable


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
