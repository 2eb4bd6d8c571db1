"""app.http.request_id: the id every answer carries, echoed when the caller's is sane."""

from __future__ import annotations

import re

import pytest

from app.http.request_id import request_id


def _scope(value: bytes | None) -> dict[str, object]:
    headers = [(b"x-request-id", value)] if value is not None else []
    return {"type": "http", "headers": headers}


@pytest.mark.parametrize(
    "incoming",
    [b"abc-123", b"0f9c4c2e-6f51-4a8e-9d0b-2b7f1f3c9a10", b"01HZX3JQ", b"Root=1-5e1b4151:ab+/"],
)
def test_a_valid_incoming_id_is_echoed(incoming: bytes) -> None:
    assert request_id(_scope(incoming)) == incoming.decode()


@pytest.mark.parametrize(
    "incoming",
    [None, b"", b"with space", b"a\r\nSet-Cookie: x=1", b'"quoted"', b"x" * 129, b"\xff\xfe"],
)
def test_an_invalid_or_missing_id_is_replaced_by_a_new_one(incoming: bytes | None) -> None:
    made = request_id(_scope(incoming))
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert request_id(_scope(incoming)) != made, "each request gets its own"


def test_the_id_is_made_once_per_request() -> None:
    scope = _scope(None)
    assert request_id(scope) == request_id(scope)
