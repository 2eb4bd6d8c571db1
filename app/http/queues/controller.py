"""/api/v1/queues: per-queue counts and throughput, pause and resume."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.json_body import NOT_JSON, require_json
from app.http.queues.schemas import Queue, QueueFairness, QueueLimits, QueueList
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

    @get(QUEUE_PATH + "/limits", summary="A queue's rate limits", opt=requires("read"))
    async def get_limits(
        self, queue: FromPath[str], queue_service: NamedDependency[QueueService]
    ) -> QueueLimits:
        """`null` for a limit the queue does not have."""
        return await queue_service.limits(queue)

    @put(
        QUEUE_PATH + "/limits",
        summary="Set a queue's rate limits",
        description="At most `count` starts in any `period_sec` seconds, across the fleet: "
        "`start` for the queue's jobs together, `per_rate_key` for the jobs of each "
        "rate_key. The body replaces both: a limit left out or `null` is removed. A count "
        "outside 1..10000 or a period outside 0.01..86400 is a 400 naming the field.",
        responses={415: NOT_JSON},
        opt=requires("admin"),
    )
    async def set_limits(
        self,
        request: Request[Any, Any, Any],
        queue: FromPath[str],
        data: JSONBody[QueueLimits],
        queue_service: NamedDependency[QueueService],
    ) -> QueueLimits:
        """Workers count by the new limits from their next start; jobs already waiting for
        the old ones try again when those said, and are counted by the new ones then."""
        require_json(request)
        return await queue_service.set_limits(queue, data)

    @get(QUEUE_PATH + "/fairness", summary="A queue's fairness", opt=requires("read"))
    async def get_fairness(
        self, queue: FromPath[str], queue_service: NamedDependency[QueueService]
    ) -> QueueFairness:
        """`{"by": null}` for a queue that starts its jobs in priority order only."""
        return await queue_service.fairness(queue)

    @put(
        QUEUE_PATH + "/fairness",
        summary="Make a queue fair between tenants, or not",
        description='`{"by": "partition_key"}`: the queue starts its due jobs round-robin '
        "over their partition_key (jobs without one are one more tenant), within each "
        'priority. `{"by": null}`: in priority order, then oldest first. Applies to jobs '
        "triggered from then on; jobs already queued keep their order. Any other value is a "
        "400 naming `by`.",
        responses={415: NOT_JSON},
        opt=requires("admin"),
    )
    async def set_fairness(
        self,
        request: Request[Any, Any, Any],
        queue: FromPath[str],
        data: JSONBody[QueueFairness],
        queue_service: NamedDependency[QueueService],
    ) -> QueueFairness:
        """The queue's fairness as it is now."""
        require_json(request)
        return await queue_service.set_fairness(queue, data)
