"""How the worker registry is shown to users: live workers, and the tasks they registered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class WorkerQueue(msgspec.Struct, kw_only=True):
    """A queue a worker serves, with its concurrency (0: no limit)."""

    queue: str
    concurrency: int


class Worker(msgspec.Struct, kw_only=True):
    """A live worker: who it is, what it serves and runs, and whether it leads maintenance."""

    worker_id: str
    host: str
    pid: int
    version: str
    queues: list[WorkerQueue]
    tasks: list[str]
    started_at: datetime
    last_seen_at: datetime
    leader: bool


class WorkerList(msgspec.Struct, kw_only=True):
    """Workers seen within the liveness window, by worker_id."""

    workers: list[Worker]


class Task(msgspec.Struct, kw_only=True):
    """A task some live worker registered: its args schema, how many workers run it, where."""

    task: str
    # The JSON schema of the task's args; None when it takes any JSON object.
    args_schema: dict[str, Any] | None
    workers: int
    # The queues served by the workers that registered the task.
    queues: list[str]


class TaskList(msgspec.Struct, kw_only=True):
    """Tasks registered by live workers, by name."""

    tasks: list[Task]
