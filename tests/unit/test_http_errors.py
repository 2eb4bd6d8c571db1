"""app.http.errors: a recursion limit, a malformed path id, a full database, as HTTP."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import asyncpg
import msgspec
import pytest
from litestar.exceptions import ValidationException
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.http.errors import (
    REFUSED_VALUE_DETAIL,
    database_error_handler,
    http_exception_handler,
    recursion_error_handler,
)

REQUEST_ID = "req-42"


def _request() -> Any:
    request = MagicMock()
    request.method = "POST"
    request.url.path = "/api/v1/jobs/trigger"
    request.scope = {"headers": [(b"x-request-id", REQUEST_ID.encode())]}
    return request


def test_json_nested_too_deeply_is_a_400() -> None:
    with pytest.raises(RecursionError) as caught:
        msgspec.json.decode(b"[" * 100_000 + b"]" * 100_000)
    response = recursion_error_handler(_request(), caught.value)
    assert response.status_code == 400
    assert response.content == {
        "status_code": 400,
        "detail": "request body is nested too deeply",
        "request_id": REQUEST_ID,
    }


def test_any_other_recursion_is_still_a_500() -> None:
    response = recursion_error_handler(_request(), RecursionError("maximum recursion depth"))
    assert response.status_code == 500


_BAD_ID = {"message": "Invalid UUID", "key": "job_id", "source": "path"}
_BAD_LIMIT = {"message": "Expected `int` >= 1", "key": "limit", "source": "query"}


def test_malformed_path_id_is_a_400_naming_it() -> None:
    request = _request()
    request.path_params = {"job_id": "abc"}
    exc = ValidationException(detail="Validation failed", extra=[_BAD_ID])
    response = http_exception_handler(request, exc)
    assert response.status_code == 400
    assert response.content == {
        "status_code": 400,
        "detail": "job_id 'abc' is not a UUID",
        "request_id": REQUEST_ID,
    }


def test_malformed_path_id_comes_after_the_query_problems() -> None:
    request = _request()
    request.path_params = {"job_id": "abc"}
    exc = ValidationException(detail="Validation failed", extra=[_BAD_ID, _BAD_LIMIT])
    response = http_exception_handler(request, exc)
    assert response.content == {
        "status_code": 400,
        "detail": "Expected `int` >= 1 (field `limit`)",
        "extra": [_BAD_LIMIT],
        "request_id": REQUEST_ID,
    }


_FULL = asyncpg.TooManyConnectionsError('too many connections for role "etl_secret_role"')


def _wrapped(driver_error: BaseException) -> DBAPIError:
    adapted = Exception(f"{type(driver_error)}: {driver_error}")
    adapted.__cause__ = driver_error
    return DBAPIError("SELECT secret_table", None, adapted)


@pytest.mark.parametrize(
    "error",
    [
        _wrapped(_FULL),
        _FULL,  # a refused login, raised before SQLAlchemy wraps anything
        _wrapped(asyncpg.CannotConnectNowError("the database system is starting up")),
        PoolTimeoutError("QueuePool limit of size 4 overflow 0 reached, connection timed out"),
    ],
    ids=["53300 wrapped", "53300 raw", "57P03 wrapped", "pool timeout"],
)
def test_a_full_or_starting_database_is_a_503_with_retry_after(error: Exception) -> None:
    response = database_error_handler(_request(), error)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.content == {
        "status_code": 503,
        "detail": "database unavailable",
        "retry_after_sec": int(response.headers["Retry-After"]),
        "request_id": REQUEST_ID,
    }, "none of the database's words (roles, tables, settings) reach the client"


# What PostgreSQL and asyncpg said in the findings: column types, encodings, limits.
_REFUSED_VALUES = [
    asyncpg.DataError(
        "invalid input for query argument $2: 99999999999999999999 (value out of int64 range)"
    ),
    asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
]


@pytest.mark.parametrize("driver_error", _REFUSED_VALUES, ids=["int64", "nul"])
def test_a_value_the_database_refused_is_a_400_without_its_words(
    driver_error: asyncpg.PostgresError, caplog: pytest.LogCaptureFixture
) -> None:
    error = _wrapped(driver_error)
    # SQLAlchemy's asyncpg adapter copies the SQLSTATE onto the error it wraps.
    error.orig.sqlstate = driver_error.sqlstate  # type: ignore[union-attr]
    response = database_error_handler(_request(), error)
    assert response.status_code == 400
    assert response.content == {
        "status_code": 400,
        "detail": REFUSED_VALUE_DETAIL,
        "request_id": REQUEST_ID,
    }
    logged = caplog.text
    assert REQUEST_ID in logged, "the cause is logged with the request id"
    assert str(driver_error) in logged


def test_an_unexpected_database_error_is_a_500_without_its_words() -> None:
    response = database_error_handler(
        _request(), _wrapped(asyncpg.UndefinedTableError("secret_table"))
    )
    assert response.status_code == 500
    assert response.content == {
        "status_code": 500,
        "detail": "internal error",
        "request_id": REQUEST_ID,
    }
