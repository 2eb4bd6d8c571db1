"""GET /api/v1/jobs/{job_id}/stream: a job's status and progress as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.domain.views import Job
from app.http.auth import requires
from app.http.dependencies import provide_job_service
from app.http.job_docs import BAD_JOB_ID, NOT_FOUND
from app.http.jobs_controller import parse_job_id
from app.jobs.job_watch import JobWatch
from app.jobs.service import JobService

EVENT_NAME = "job"
KEEPALIVE_COMMENT = "keep-alive"


def provide_job_watch(state: State) -> JobWatch:
    """The process's JobWatch, made at start-up."""
    watch: JobWatch = state.job_watch
    return watch


class JobStreamController(Controller):
    """Follow one job live."""

    path = "/api/v1/jobs"
    tags = ["jobs"]
    dependencies = {
        "job_service": Provide(provide_job_service, sync_to_thread=False),
        "job_watch": Provide(provide_job_watch, sync_to_thread=False),
    }

    @get(
        "/{job_id:str}/stream",
        summary="Server-sent events: the job now, then after each status or progress change",
        media_type="text/event-stream",
        responses={400: BAD_JOB_ID, 404: NOT_FOUND},
        opt=requires("read"),
    )
    async def stream(
        self,
        job_id: FromPath[str],
        job_service: NamedDependency[JobService],
        job_watch: NamedDependency[JobWatch],
        state: State,
    ) -> ServerSentEvent:
        """`event: job` with the Job now, then one per change; ends after a final status.

        A `: keep-alive` comment comes after APP_STREAM_KEEPALIVE_SEC without a change.
        404 when the job is unknown, 400 when the id is not a UUID.
        """
        first = await job_service.status(parse_job_id(job_id))
        keepalive_sec: float = state.settings.app_stream_keepalive_sec
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
