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
    database_error_handler,
    http_exception_handler,
    recursion_error_handler,
)


def _request() -> Any:
    request = MagicMock()
    request.method = "POST"
    request.url.path = "/api/v1/jobs/trigger"
    return request


def test_json_nested_too_deeply_is_a_400() -> None:
    with pytest.raises(RecursionError) as caught:
        msgspec.json.decode(b"[" * 100_000 + b"]" * 100_000)
    response = recursion_error_handler(_request(), caught.value)
    assert response.status_code == 400
    assert response.content == {"status_code": 400, "detail": "request body is nested too deeply"}


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
    assert response.content == {"status_code": 400, "detail": "job_id 'abc' is not a UUID"}


def test_malformed_path_id_comes_after_the_query_problems() -> None:
    request = _request()
    request.path_params = {"job_id": "abc"}
    exc = ValidationException(detail="Validation failed", extra=[_BAD_ID, _BAD_LIMIT])
    response = http_exception_handler(request, exc)
    assert response.content == {
        "status_code": 400,
        "detail": "Expected `int` >= 1 (field `limit`)",
        "extra": [_BAD_LIMIT],
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
    }, "none of the database's words (roles, tables, settings) reach the client"
