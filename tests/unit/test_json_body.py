"""app.http.json_body: repeated keys and lone surrogates in request bodies, worded for clients."""

from __future__ import annotations

import msgspec
import pytest

from app.http.json_body import DuplicateKeyError, lone_surrogate, reject_duplicate_keys


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"queue":"a","task":"noop","queue":"b"}', "queue"),
        (b'{"args":{"x":{"y":1,"y":2}}}', "y"),
        (b'{"jobs":[{"a":1},{"a":1,"b":2,"a":3}]}', "a"),
        (b'{"\\u0061":1,"a":2}', "a"),  # the same key, spelled with an escape
    ],
)
def test_reject_duplicate_keys_names_the_repeated_key(raw: bytes, key: str) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        reject_duplicate_keys(raw)
    assert f"repeats the key {key!r}" in str(caught.value)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"queue":"a","task":"noop","args":{"queue":"b"}}',  # the same key in another object
        b'[{"a":1},{"a":2}]',
        b'{"a":"\\"a\\":1","b":1}',  # a key-like text inside a value
        b'{"n":' + b"9" * 5000 + b"}",  # longer than Python converts to int by default
        b'{"x":1e400}',
    ],
)
def test_reject_duplicate_keys_accepts_distinct_keys(raw: bytes) -> None:
    reject_duplicate_keys(raw)


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b'"\\ud800"', "\\ud800 at byte 1"),
        (b'{"a":"x\\uD83Dy"}', "\\uD83D at byte 7"),
        (b'"\\udc00"', "\\udc00 at byte 1"),  # a low surrogate alone
        (b'"\\ud800\\u0041"', "\\ud800 at byte 1"),  # followed by an escape that is no pair
        (b'"\\\\\\ud800"', "\\ud800 at byte 3"),  # after an escaped backslash
    ],
)
def test_lone_surrogate_says_where(raw: bytes, found: str) -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(raw)  # what the message replaces
    message = lone_surrogate(raw)
    assert message is not None
    assert found in message
    assert "lone UTF-16 surrogate" in message


@pytest.mark.parametrize(
    "raw", [b'"\\ud83d\\ude00"', b'"\\\\ud800"', b'{"a":"\\u0041"}', b'{"queue":']
)
def test_lone_surrogate_ignores_pairs_and_escaped_backslashes(raw: bytes) -> None:
    assert lone_surrogate(raw) is None
