"""uvicorn's httptools protocol with a request-head size cap and a head-read deadline.

uvicorn bounds neither: with its defaults a client could hold a connection open forever by
sending half a header, or stream a 100 MB header that was buffered and answered. This
subclass keeps httptools (the fastest parser uvicorn has) and adds the two checks:

- the head (request line and headers) may be at most `header_max_bytes`; beyond that the
  client gets 431 and the connection is closed at once, before the rest is read;
- a client has `header_timeout_sec` from connecting (or from the first byte of a further
  request on a kept-alive connection) to send a complete head; after that it gets 408 (or,
  if it sent nothing, just the close).

Idle kept-alive connections are closed by uvicorn's own `timeout_keep_alive`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

# What a header line adds to its name and value on the wire: ": " and CRLF.
_HEADER_LINE_OVERHEAD = 4


@dataclass(frozen=True)
class HeadLimits:
    """How large a request head may be, and how long a client may take to send it."""

    header_max_bytes: int
    header_timeout_sec: float


class HeadTooLargeError(Exception):
    """The request head is larger than the configured limit."""


class EdgeHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses oversized heads (431) and slow heads (408)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HeadLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        # Between the end of one request's body and the end of the next one's head.
        self._reading_head = True
        self._head_bytes = 0
        self._head_size = 0  # exact, from the parser's callbacks
        self._head_deadline: asyncio.TimerHandle | None = None

    # Connection lifecycle
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            # Head bytes so far; the chunk that ends the head may carry body bytes too, so
            # this is only compared while the head is still incomplete.
            self._head_bytes += len(data)
            if self._head_deadline is None:
                self._arm_head_deadline()  # a further request on a kept-alive connection
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, HeadTooLargeError):
                self._refuse(431, "request head larger than the limit")
                return
            self._invalid_request()
            return
        except httptools.HttpParserError:
            self._invalid_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._reading_head and self._head_bytes > self._limits.header_max_bytes:
            self._refuse(431, "request head larger than the limit")

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + _HEADER_LINE_OVERHEAD
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_deadline()
        if self._head_size > self._limits.header_max_bytes:
            # The whole head came in one read: refused all the same, before the app sees it.
            raise HeadTooLargeError
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0

    # The two refusals
    def _invalid_request(self) -> None:
        message = "Invalid HTTP request received."
        self.logger.warning(message)
        self.send_400_response(message)

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` with a JSON error body and close, reading nothing more."""
        self._cancel_head_deadline()
        if self.transport.is_closing():
            return
        self.logger.warning("%s %s from %s", status, detail, self._client_text())
        body = json.dumps({"status_code": status, "detail": detail}).encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"x-content-type-options: nosniff\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"

    # The head-read deadline
    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(
            self._limits.header_timeout_sec, self._head_deadline_passed
        )

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self._head_bytes == 0:
            self.transport.close()  # connected and sent nothing: nothing to answer
        else:
            self._refuse(408, "request head not received in time")


def edge_protocol(limits: HeadLimits) -> Any:
    """uvicorn's `http=` argument: the protocol class with these limits bound.

    A partial of a module-level class pickles, so `--workers N` (spawned processes) gets it.
    """
    return functools.partial(EdgeHttpToolsProtocol, limits=limits)
