"""ASGI middleware that runs each API request in a server span (only while tracing is on).

The span continues the caller's trace when the request carries a W3C `traceparent` (and
`tracestate`) header, through the propagators OTEL_PROPAGATORS names (W3C trace context and
baggage by default); otherwise it starts a new one. Everything the request does runs
inside it, so a job it triggers stores this span's context (app.observability.tracing).
"""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import propagate
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer


class _HeaderGetter(Getter[Any]):
    """Reads a header from an ASGI scope's list of (name, value) byte pairs."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == wanted]
        return values or None

    def keys(self, carrier: Any) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_HEADERS = _HeaderGetter()


class HttpTracingMiddleware:
    """A SERVER span per request, named by method and route template (`POST /api/v1/...`).

    Litestar runs app middleware once a route matched, so the name is the template, never
    the raw path. A 5xx answer, or none at all, marks the span as an error.
    """

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request inside its span."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        route = str(scope.get("path_template") or scope.get("path", ""))
        parent = propagate.extract(scope.get("headers", ()), getter=_HEADERS)
        with self.tracer.start_as_current_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "url.path": str(scope.get("path", "")),
            },
        ) as span:
            status: int | None = None

            async def send_and_note(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                await send(message)

            await self.app(scope, receive, send_and_note)
            if status is None or status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"answered {status or 'nothing'}"))
