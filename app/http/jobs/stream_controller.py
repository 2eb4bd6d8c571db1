"""GET /api/v1/jobs/{job_id}/stream: a job's status and progress as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.http.auth import api_client, requires
from app.http.dependencies import from_state
from app.http.edge.stream_slots import StreamSlot, StreamSlots
from app.http.jobs.controller import JOB_PATH
from app.http.jobs.docs import BAD_JOB_ID, NOT_FOUND, TOO_MANY_STREAMS
from app.http.jobs.schemas import Job
from app.jobs.job_watch import JobWatch
from app.jobs.service import JobService
from app.settings import Settings

EVENT_NAME = "job"
KEEPALIVE_COMMENT = "keep-alive"


class JobStreamController(Controller):
    """Follow one job live."""

    path = "/api/v1/jobs"
    tags = ["jobs"]
    dependencies = from_state("job_service", "job_watch", "settings", "stream_slots")

    @get(
        JOB_PATH + "/stream",
        summary="Server-sent events: the job now, then after each status or progress change",
        media_type="text/event-stream",
        responses={400: BAD_JOB_ID, 404: NOT_FOUND, 429: TOO_MANY_STREAMS},
        opt=requires("read"),
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[UUID],
        job_service: NamedDependency[JobService],
        job_watch: NamedDependency[JobWatch],
        settings: NamedDependency[Settings],
        stream_slots: NamedDependency[StreamSlots],
    ) -> ServerSentEvent:
        """`event: job` with the job (a `Job`) now, then one per change; ends after a final status.

        A `: keep-alive` comment comes after APP_STREAM_KEEPALIVE_SEC without a change.
        404 when the job is unknown, 400 when the id is not a UUID, 429 (with Retry-After)
        when this server or this token already has APP_STREAM_MAX / APP_STREAM_MAX_PER_TOKEN
        streams open.
        """
        first = await job_service.status(job_id)
        slot = stream_slots.open(api_client(request))
        keepalive_sec = settings.app_stream_keepalive_sec
        messages = _messages(job_watch.follow(first, keepalive_sec=keepalive_sec), slot)
        slot.release_with(messages)
        return ServerSentEvent(messages)


async def _messages(
    views: AsyncGenerator[Job | None], slot: StreamSlot
) -> AsyncIterator[ServerSentEventMessage]:
    """One `job` event per view, a comment per keep-alive tick.

    Closing this iterator closes `views` at once, which ends the client's subscription, and
    gives the stream's slot back.
    """
    try:
        async with aclosing(views):
            async for view in views:
                if view is None:
                    yield ServerSentEventMessage(data=None, comment=KEEPALIVE_COMMENT)
                else:
                    data = msgspec.json.encode(view).decode()
                    yield ServerSentEventMessage(event=EVENT_NAME, data=data)
    finally:
        slot.release()
