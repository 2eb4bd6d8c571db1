"""The bodies of /api/v1/workers and /api/v1/tasks: the domain's registry types."""

from __future__ import annotations

from app.domain.workers import Task, TaskList, Worker, WorkerList, WorkerQueue

__all__ = ["Task", "TaskList", "Worker", "WorkerList", "WorkerQueue"]
