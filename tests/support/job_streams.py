"""Reading a job's server-sent events (GET /api/v1/jobs/{id}/stream) in end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

EVENT_TIMEOUT_SEC = 20.0


@dataclass
class JobStream:
    """The `job` events of one open stream, read as they come."""

    response: httpx.Response
    lines: AsyncIterator[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ended: bool = False

    async def next_event(self, timeout: float = EVENT_TIMEOUT_SEC) -> dict[str, Any] | None:
        """The next `job` event's Job; None once the server ended the stream."""
        return await asyncio.wait_for(self._read_event(), timeout)

    async def _read_event(self) -> dict[str, Any] | None:
        name: str | None = None
        data: list[str] = []
        async for line in self.lines:
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
            elif line == "" and data:
                assert name == "job", f"unexpected event {name!r}"
                view: dict[str, Any] = json.loads("\n".join(data))
                self.events.append(view)
                return view
        self.ended = True
        return None

    async def until(self, predicate: Any, timeout: float = EVENT_TIMEOUT_SEC) -> dict[str, Any]:
        """Read events until one satisfies `predicate`; fail if the stream ends first."""
        while True:
            view = await self.next_event(timeout)
            assert view is not None, f"stream ended early; saw {self.statuses()}"
            if predicate(view):
                return view

    async def read_to_end(self, timeout: float = EVENT_TIMEOUT_SEC) -> list[dict[str, Any]]:
        """Every remaining event, until the server closes the stream."""
        while await self.next_event(timeout) is not None:
            pass
        return self.events

    def statuses(self) -> list[str]:
        """The status of each event so far, repeats collapsed."""
        seen: list[str] = []
        for view in self.events:
            if not seen or seen[-1] != view["status"]:
                seen.append(view["status"])
        return seen


@contextlib.asynccontextmanager
async def open_stream(client: httpx.AsyncClient, job_id: str) -> AsyncIterator[JobStream]:
    """An open SSE stream for one job."""
    async with client.stream("GET", f"/api/v1/jobs/{job_id}/stream") as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield JobStream(response, response.aiter_lines())
