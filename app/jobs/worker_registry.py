"""WorkerRegistry: the live workers and their tasks, as dl_workers holds them (app.jobs.membership
writes it), for the API's listings, trigger warnings and /queues, and for in-process enqueue.

Triggers ask whether a queue has a live consumer on every call, so they read a view of the
served queues kept for at most `LIVE_QUEUES_TTL_SEC`: one statement every few seconds while
triggers come in, none while they do not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import workers
from app.db.connections import MAX_NAME_LENGTH, PGQUEUER, application_name
from app.domain.workers import Task, TaskList, Worker, WorkerList, WorkerQueue
from app.jobs.leadership import LEADER_LOCK_ID
from app.jobs.membership import live_window
from app.settings import Settings

logger = logging.getLogger("app.jobs.worker_registry")

# How stale the served queues a trigger checks may be: a worker that just started may get a
# warning for its queue this long, one that just died none.
LIVE_QUEUES_TTL_SEC = 5.0


async def live_tasks_in_session(session: AsyncSession, settings: Settings) -> set[str]:
    """The tasks live workers registered, read in the caller's transaction."""
    return await workers.live_task_names(session, live_window(settings.dl_worker_refresh_sec))


def unserved_warning(queue: str) -> str:
    """What a trigger's answer says about a job on a queue no live worker serves."""
    return f"no live worker serves queue {queue!r}; the job waits until one does"


@dataclass
class WorkerRegistry:
    """Reads of dl_workers, each limited to workers seen within the liveness window."""

    sessions: async_sessionmaker[AsyncSession]
    live_within: timedelta
    live_queues_ttl_sec: float = LIVE_QUEUES_TTL_SEC
    _served: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _served_at: float | None = field(default=None, init=False, repr=False)
    _served_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, sessions: async_sessionmaker[AsyncSession]
    ) -> WorkerRegistry:
        """The registry with the liveness window the workers keep (DL_WORKER_REFRESH_SEC)."""
        return cls(sessions, live_window(settings.dl_worker_refresh_sec))

    async def list_workers(self) -> WorkerList:
        """Live workers by worker_id, each with its queues, tasks and leadership."""
        async with self.sessions() as session, session.begin():
            rows = await workers.live_workers(
                session,
                self.live_within,
                leader_lock_id=LEADER_LOCK_ID,
                leader_session_prefix=application_name(PGQUEUER) + " ",
                name_length=MAX_NAME_LENGTH,
            )
        return WorkerList(
            workers=[
                Worker(
                    worker_id=row.worker_id,
                    host=row.host,
                    pid=row.pid,
                    version=row.version,
                    queues=[
                        WorkerQueue(queue=queue, concurrency=int(concurrency))
                        for queue, concurrency in sorted(row.queues.items())
                    ],
                    tasks=sorted(row.tasks),
                    started_at=row.started_at,
                    last_seen_at=row.last_seen_at,
                    leader=row.leader,
                )
                for row in rows
            ]
        )

    async def list_tasks(self) -> TaskList:
        """Tasks registered by live workers, by name; a task's schema is its newest worker's."""
        async with self.sessions() as session, session.begin():
            rows = await workers.live_workers(
                session,
                self.live_within,
                leader_lock_id=LEADER_LOCK_ID,
                leader_session_prefix=application_name(PGQUEUER) + " ",
                name_length=MAX_NAME_LENGTH,
            )
        tasks: dict[str, Task] = {}
        # Newest first: after a deploy that changed a task's args, its new schema is shown.
        for row in sorted(rows, key=lambda row: row.started_at, reverse=True):
            for name, schema in row.tasks.items():
                task = tasks.setdefault(
                    name, Task(task=name, args_schema=schema, workers=0, queues=[])
                )
                task.workers += 1
                task.queues = sorted({*task.queues, *row.queues})
        return TaskList(tasks=[tasks[name] for name in sorted(tasks)])

    async def consumers_in_session(self, session: AsyncSession) -> dict[str, int]:
        """Live workers serving each queue, read in the caller's transaction."""
        return await workers.consumers_per_queue(session, self.live_within)

    async def live_task_names(self) -> set[str]:
        """The tasks some live worker registered."""
        async with self.sessions() as session, session.begin():
            return await workers.live_task_names(session, self.live_within)

    async def holders_of_task(self, task: str) -> dict[str, list[str]]:
        """Live workers that registered `task`, each with the queues it serves."""
        async with self.sessions() as session, session.begin():
            return await workers.live_holders_of_task(session, task, self.live_within)

    async def unserved_warnings(self, queues: Iterable[str]) -> list[str]:
        """A warning per queue (in first-seen order) that no live worker serves.

        Best effort: when the served queues cannot be read, no warning (the trigger that
        asks has already succeeded).
        """
        try:
            served = await self._served_queues()
        except Exception:
            logger.warning("could not read the served queues for trigger warnings", exc_info=True)
            return []
        unserved = dict.fromkeys(queue for queue in queues if queue not in served)
        return [unserved_warning(queue) for queue in unserved]

    async def _served_queues(self) -> dict[str, int]:
        """The served queues, read again when older than the TTL (one reader at a time)."""
        if self._fresh():
            return self._served
        async with self._served_lock:
            if not self._fresh():  # another caller may have read them meanwhile
                async with self.sessions() as session, session.begin():
                    self._served = await workers.consumers_per_queue(session, self.live_within)
                self._served_at = time.monotonic()
        return self._served

    def _fresh(self) -> bool:
        return (
            self._served_at is not None
            and time.monotonic() - self._served_at < self.live_queues_ttl_sec
        )
