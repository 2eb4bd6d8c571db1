"""JSON request bodies: declared as JSON (415), no repeated keys, accurate decoding errors.

Litestar decodes a body with msgspec, which keeps the last of two equal keys and reports a
lone UTF-16 surrogate escape (`"\\ud800"`) as "Input data was truncated". `JsonBodyRequest`
(the app's request class) decodes the same way, then refuses repeated keys, and rewords
a surrogate error; handlers taking a body also call `require_json` for the 415, and
`require_booleans` for flags that must be sent as JSON booleans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException, SerializationException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from app.http.errors import error_response

NOT_JSON = error_response(
    415,
    "The body is not declared as JSON",
    "Content-Type must be application/json, not 'text/plain'",
)
# Every backslash escape in order, so `\\` pairs are consumed and never start a `\u`.
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_HIGH = range(0xD800, 0xDC00)
_LOW = range(0xDC00, 0xE000)


def require_json(request: Request[Any, Any, Any]) -> None:
    """415 unless the body is declared as JSON."""
    media_type = request.content_type[0]
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Type must be application/json, not {media_type or 'missing'!r}",
        )


_JSON_KINDS = {str: "str", int: "int", float: "float", dict: "object", list: "array"}


async def require_booleans(
    request: Request[Any, Any, Any], fields: Sequence[str], *, items: str | None = None
) -> None:
    """400 naming the field when one of `fields` was sent as anything but true or false.

    Litestar converts a body leniently (`"true"` and `1` become True), which would let a
    mistyped flag pass for a choice. `items` names a list of objects to check instead of
    the body (`jobs` of a bulk trigger: the field is then `jobs[i].<name>`). The body was
    decoded already (the handler has it): Litestar's own cache is read, nothing is parsed.
    """
    body = await Request.json(request)
    if not isinstance(body, dict):
        return
    listed = body.get(items) if items is not None else [body]
    if not isinstance(listed, list):
        return
    for index, value in enumerate(listed):
        if not isinstance(value, dict):
            continue
        where = "" if items is None else f"{items}[{index}]."
        for name in fields:
            sent = value.get(name, False)
            if not isinstance(sent, bool):
                kind = "null" if sent is None else _JSON_KINDS.get(type(sent), "value")
                raise HTTPException(
                    status_code=HTTP_400_BAD_REQUEST,
                    detail=f"Expected `bool`, got `{kind}` (field `{where}{name}`)",
                )


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"JSON object repeats the key {key[:100]!r}; each key may appear once in an object"
        )


def _unique_pairs(pairs: list[tuple[str, Any]]) -> None:
    # Nothing is built: this pass only looks at the keys of each object.
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)


def reject_duplicate_keys(body: bytes) -> None:
    """DuplicateKeyError naming the first key an object repeats; the body is valid JSON.

    msgspec has no hook that sees an object's pairs, so the standard library's C scanner
    reads the body a second time with one callback per object (numbers are not converted).
    """
    json.loads(body, object_pairs_hook=_unique_pairs, parse_int=len, parse_float=len)


def lone_surrogate(body: bytes) -> str | None:
    """Where the body's first unpaired UTF-16 surrogate escape is, said for a client."""
    escapes = list(_ESCAPE.finditer(body))
    index = 0
    while index < len(escapes):
        match = escapes[index]
        code = int(match.group(1), 16) if match.group(1) else -1
        if code in _HIGH:
            after = escapes[index + 1] if index + 1 < len(escapes) else None
            paired = (
                after is not None
                and after.start() == match.end()
                and after.group(1) is not None
                and int(after.group(1), 16) in _LOW
            )
            if paired:
                index += 2
                continue
        if code in _HIGH or code in _LOW:
            return (
                f"JSON is malformed: {match.group().decode()} at byte {match.start()} is a lone "
                "UTF-16 surrogate (\\uD800-\\uDBFF must be followed by \\uDC00-\\uDFFF)"
            )
        index += 1
    return None


class JsonBodyRequest(Request[Any, Any, Any]):
    """The app's request: its `json()` refuses repeated keys and words decoding errors well."""

    async def json(self) -> Any:
        """The decoded body; a SerializationException (a 400) says what is wrong with it."""
        try:
            value = await super().json()
        except SerializationException as exc:
            message = str(exc)
            if "truncated" in message or "surrogate" in message:
                message = lone_surrogate(await self.body()) or message
            raise SerializationException(message) from exc
        if isinstance(value, dict | list):  # a scalar body has no object to repeat a key in
            try:
                reject_duplicate_keys(await self.body())
            except DuplicateKeyError as exc:
                raise SerializationException(str(exc)) from None
            except RecursionError:  # msgspec's depth limit and the scanner's differ a little
                raise SerializationException("request body is nested too deeply") from None
        return value
