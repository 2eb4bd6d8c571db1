"""What a worker does with a job whose task it has no pipeline for.

Failing it as an ordinary error would retry it until its attempts run out, although no
attempt can succeed while no worker has the task. So the worker asks the registry
(dl_workers) whether a live worker serving the job's queue registered the task: if none
did, the job fails at once (one attempt, a PermanentError naming the task and this
worker's tasks); if one did (a fleet whose workers load different pipeline modules), the
attempt fails as a retry, which another worker may pick up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from app.pipelines.errors import PermanentError

logger = logging.getLogger("worker.runner")

# task -> the live workers that registered it, each with the queues it serves.
TaskHolders = Callable[[str], Awaitable[Mapping[str, Sequence[str]]]]


class TaskNotRegisteredError(PermanentError):
    """No live worker serving the job's queue has registered its task: no retry can succeed."""


class TaskNotRegisteredHereError(LookupError):
    """This worker lacks the job's task, but another live worker serving its queue has it."""


async def unregistered_task_error(
    task: str,
    queue: str,
    worker_id: str,
    registered: Sequence[str],
    holders: TaskHolders | None,
) -> Exception:
    """The error the attempt of a job with unregistered `task` ends with."""
    here = f"task {task!r} is not registered on worker {worker_id}"
    try:
        found = await holders(task) if holders is not None else {}
    except Exception:  # without an answer, retrying is the safe choice
        logger.warning("could not look up the workers that registered %r", task, exc_info=True)
        return TaskNotRegisteredHereError(f"{here}; the registry could not be read: retried")
    elsewhere = sorted(
        worker for worker, queues in found.items() if worker != worker_id and queue in queues
    )
    if elsewhere:
        return TaskNotRegisteredHereError(
            f"{here}; live worker(s) serving queue {queue!r} registered it:"
            f" {', '.join(elsewhere)}: retried"
        )
    return TaskNotRegisteredError(
        f"{here} (registered: {', '.join(registered)}), nor on any live worker serving"
        f" queue {queue!r}"
    )
