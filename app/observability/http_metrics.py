"""ASGI middleware that counts and times the API's HTTP requests for Prometheus."""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.metrics import http_metrics


class HttpMetricsMiddleware:
    """Counts each answered request by method, route template and status, and times it.

    Litestar runs app middleware once a route matched, so the label is the template
    (`/api/v1/jobs/{job_id:uuid}`), never the raw path: a label per job id would grow
    without end. A request that ends without an answer counts as a 500. The time runs to
    the end of the body, so for an event stream it is how long the stream stayed open.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = http_metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, then record it."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method = str(scope.get("method", "GET"))
            route = _route(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.duration.labels(method, route).observe(time.perf_counter() - started)


def _route(scope: Any) -> str:
    """The matched route's path template."""
    template = scope.get("path_template")
    return str(template) if template else "unmatched"
