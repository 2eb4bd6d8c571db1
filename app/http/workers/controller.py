"""/api/v1/workers and /api/v1/tasks: the live workers and the tasks they registered."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.workers.schemas import TaskList, WorkerList
from app.jobs.worker_registry import WorkerRegistry

LIVENESS = (
    " A worker counts as live when it was seen within three `DL_WORKER_REFRESH_SEC` periods;"
    " one that stopped cleanly is gone at once."
)


class WorkersController(Controller):
    """Who is alive, what each serves and runs, and the tasks the fleet can run."""

    path = "/api/v1"
    tags = ["workers"]
    dependencies = from_state("worker_registry")

    @get(
        "/workers",
        summary="Live workers with their queues, tasks, version and leadership",
        description="Sorted by worker_id." + LIVENESS,
        opt=requires("read"),
    )
    async def list_workers(self, worker_registry: NamedDependency[WorkerRegistry]) -> WorkerList:
        """Workers seen within the liveness window."""
        return await worker_registry.list_workers()

    @get(
        "/tasks",
        summary="Tasks registered by live workers, with their args schemas",
        description=(
            "Sorted by task. `args_schema` is the JSON schema of the task's args (null: any"
            " JSON object); `queues` are the queues served by the workers that registered it."
            + LIVENESS
        ),
        opt=requires("read"),
    )
    async def list_tasks(self, worker_registry: NamedDependency[WorkerRegistry]) -> TaskList:
        """Tasks of the live workers, by name."""
        return await worker_registry.list_tasks()
