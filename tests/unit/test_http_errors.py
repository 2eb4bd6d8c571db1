"""app.http.errors: what a decoder's recursion limit becomes."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import msgspec
import pytest

from app.http.errors import recursion_error_handler


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
