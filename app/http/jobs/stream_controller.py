"""GET /api/v1/jobs/{job_id}/stream: a job's status and progress as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from uuid import UUID

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.jobs.controller import JOB_PATH
from app.http.jobs.docs import BAD_JOB_ID, NOT_FOUND
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
    dependencies = from_state("job_service", "job_watch", "settings")

    @get(
        JOB_PATH + "/stream",
        summary="Server-sent events: the job now, then after each status or progress change",
        media_type="text/event-stream",
        responses={400: BAD_JOB_ID, 404: NOT_FOUND},
        opt=requires("read"),
    )
    async def stream(
        self,
        job_id: FromPath[UUID],
        job_service: NamedDependency[JobService],
        job_watch: NamedDependency[JobWatch],
        settings: NamedDependency[Settings],
    ) -> ServerSentEvent:
        """`event: job` with the job (a `Job`) now, then one per change; ends after a final status.

        A `: keep-alive` comment comes after APP_STREAM_KEEPALIVE_SEC without a change.
        404 when the job is unknown, 400 when the id is not a UUID.
        """
        first = await job_service.status(job_id)
        keepalive_sec = settings.app_stream_keepalive_sec
        return ServerSentEvent(_messages(job_watch.follow(first, keepalive_sec=keepalive_sec)))


async def _messages(
    views: AsyncGenerator[Job | None],
) -> AsyncIterator[ServerSentEventMessage]:
    """One `job` event per view, a comment per keep-alive tick.

    Closing this iterator closes `views` at once, which ends the client's subscription.
    """
    async with aclosing(views):
        async for view in views:
            if view is None:
                yield ServerSentEventMessage(data=None, comment=KEEPALIVE_COMMENT)
            else:
                data = msgspec.json.encode(view).decode()
                yield ServerSentEventMessage(event=EVENT_NAME, data=data)
