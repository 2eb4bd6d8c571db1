"""/api/v1/queues: per-queue counts and throughput, pause and resume."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.queues.schemas import Queue, QueueList
from app.jobs.queue_service import QueueService

# Queue names are letters, digits and . _ : - (QueueName), so they travel in the path as
# they are; the service checks them (a 400 naming `queue`).
QUEUE_PATH = "/{queue:str}"


class QueuesController(Controller):
    """Queues: what waits, what runs, what finished lately; pause and resume."""

    path = "/api/v1/queues"
    tags = ["queues"]
    dependencies = from_state("queue_service")

    @get(
        "/",
        summary="Every queue with its counts and the last hour's throughput",
        opt=requires("read"),
    )
    async def list_queues(self, queue_service: NamedDependency[QueueService]) -> QueueList:
        """Queues with live jobs, jobs finished in the last hour, or a pause state, by name."""
        return await queue_service.list_queues()

    @get(QUEUE_PATH, summary="One queue's counts and throughput", opt=requires("read"))
    async def get_queue(
        self, queue: FromPath[str], queue_service: NamedDependency[QueueService]
    ) -> Queue:
        """All zeros for a queue nothing is known about."""
        return await queue_service.get(queue)

    @post(
        QUEUE_PATH + "/pause",
        status_code=HTTP_200_OK,
        summary="Pause a queue",
        opt=requires("admin"),
    )
    async def pause(
        self, queue: FromPath[str], queue_service: NamedDependency[QueueService]
    ) -> Queue:
        """Workers stop starting its jobs; running ones finish. A queue unknown so far can be
        paused ahead of its first job."""
        return await queue_service.pause(queue)

    @post(
        QUEUE_PATH + "/resume",
        status_code=HTTP_200_OK,
        summary="Resume a queue",
        opt=requires("admin"),
    )
    async def resume(
        self, queue: FromPath[str], queue_service: NamedDependency[QueueService]
    ) -> Queue:
        """Waiting jobs start at once (or at their available_at)."""
        return await queue_service.resume(queue)
