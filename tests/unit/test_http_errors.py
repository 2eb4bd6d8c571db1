"""app.http.errors: what a decoder's recursion limit and a malformed path id become."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import msgspec
import pytest
from litestar.exceptions import ValidationException

from app.http.errors import http_exception_handler, recursion_error_handler


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
