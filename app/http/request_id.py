"""A request id on every answer: the caller's `X-Request-ID` when it is sane, else a new one.

The id is the one thing an error body gives away about a failure: the cause is logged with
it (every log line of the request carries `request_id`), so a client quoting it lets an
operator find the database's or the bug's own words without the client ever seeing them.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = b"x-request-id"
_STATE_KEY = "request_id"
# What a caller's id may be: enough for UUIDs, ULIDs, hex and base64 trace ids, and nothing
# that could break a log line or a header (no spaces, quotes, control characters).
_VALID = re.compile(r"[A-Za-z0-9._:+/=\-]{1,128}")


def request_id(scope: Any) -> str:
    """This request's id: made on first use (echoing a valid incoming header), then kept."""
    state: dict[str, Any] = scope.setdefault("state", {})
    found = state.get(_STATE_KEY)
    if found is None:
        found = _incoming(scope) or uuid.uuid4().hex
        state[_STATE_KEY] = found
    return str(found)


def _incoming(scope: Any) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == _HEADER_KEY:
            text = value.decode("latin-1")
            return text if _VALID.fullmatch(text) else None
    return None


async def add_request_id_header(message: Message, scope: Scope) -> None:
    """Litestar `before_send` hook: it sees every answer, routing misses and errors included."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)[HEADER] = request_id(scope)


class RequestIdLogMiddleware:
    """Binds `request_id` to every log line written while a matched route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Bind the id for the length of the request, then unbind it."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
