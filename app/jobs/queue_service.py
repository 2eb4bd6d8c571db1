"""QueueService: per-queue counts and throughput, and pausing or resuming a queue.

Pausing stops workers from starting a queue's jobs; jobs already running finish. How a
pause keeps a large backlog free of dequeue churn is told in app.db.pgqueuer_tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import job_stats, pgqueuer_tables, queues
from app.domain.errors import InvalidQueueError
from app.domain.fairness import QueueFairness
from app.domain.queues import FinishedCounts, Queue, QueueList, ThroughputMinute
from app.domain.rate_limits import QueueLimits, RateLimit
from app.domain.spec import QueueName
from app.jobs.worker_registry import WorkerRegistry
from app.settings import Settings

logger = logging.getLogger("app.jobs.queues")


def _count(counts: FinishedCounts | ThroughputMinute, status: str, count: int) -> None:
    """Add `count` jobs that ended with the final status `status`."""
    setattr(counts, status, getattr(counts, status) + count)


def check_queue_name(queue: str) -> str:
    """The name, if it is one a job could carry; InvalidQueueError naming the field if not."""
    try:
        return msgspec.convert(queue, QueueName)
    except msgspec.ValidationError:
        raise InvalidQueueError(
            "Expected 1 to 100 letters, digits and the characters . _ : - (field `queue`)"
        ) from None


@dataclass
class QueueService:
    """The operations users perform on queues."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    registry: WorkerRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = WorkerRegistry.from_settings(self.settings, self.sessions)

    async def list_queues(self) -> QueueList:
        """Every known queue, by name."""
        async with self.sessions() as session, session.begin():
            return QueueList(queues=await self._views(session, None))

    async def get(self, queue: str) -> Queue:
        """One queue (all zeros when nothing is known about it)."""
        name = check_queue_name(queue)
        async with self.sessions() as session, session.begin():
            return await self._view(session, name)

    async def pause(self, queue: str) -> Queue:
        """Stop starting the queue's jobs; running ones finish. Pausing twice is harmless.

        One transaction marks the queue paused and parks its queued dispatches.
        """
        name = check_queue_name(queue)
        async with self.sessions() as session, session.begin():
            await queues.pause_in_session(session, name)
            parked = await pgqueuer_tables.park_dispatches(session, name)
            view = await self._view(session, name)
        logger.info("queue paused: %s (%d dispatch(es) parked)", name, parked)
        return view

    async def resume(self, queue: str) -> Queue:
        """Start the queue's jobs again; waiting jobs start at once (or at their available_at).

        Resuming a queue that is not paused is harmless.
        """
        name = check_queue_name(queue)
        async with self.sessions() as session, session.begin():
            await queues.resume_in_session(session, name)
            unparked = await pgqueuer_tables.unpark_dispatches(session, name)
            if unparked:
                await pgqueuer_tables.wake_workers(session, name, unparked)
            view = await self._view(session, name)
        logger.info("queue resumed: %s (%d dispatch(es) released)", name, unparked)
        return view

    async def limits(self, queue: str) -> QueueLimits:
        """The queue's rate limits (none for a queue nothing is known about)."""
        name = check_queue_name(queue)
        async with self.sessions() as session, session.begin():
            states = await queues.queue_states(session, name)
        return states[0].limits if states else QueueLimits()

    async def set_limits(self, queue: str, limits: QueueLimits) -> QueueLimits:
        """Replace the queue's rate limits; every worker counts by them from its next start.

        A queue unknown so far can be limited ahead of its first job.
        """
        name = check_queue_name(queue)
        async with self.sessions() as session, session.begin():
            state = await queues.set_limits_in_session(session, name, limits)
        logger.info(
            "queue limits set: %s start=%s per_rate_key=%s",
            name,
            _described(state.limits.start),
            _described(state.limits.per_rate_key),
        )
        return state.limits

    async def fairness(self, queue: str) -> QueueFairness:
        """Whether the queue is fair, and by what (not, for a queue nothing is known about)."""
        name = check_queue_name(queue)
        async with self.sessions() as session, session.begin():
            states = await queues.queue_states(session, name)
        return states[0].fairness if states else QueueFairness()

    async def set_fairness(self, queue: str, fairness: QueueFairness) -> QueueFairness:
        """Make the queue fair (or not) for the jobs triggered from now on.

        A queue unknown so far can be made fair ahead of its first job.
        """
        name = check_queue_name(queue)
        async with self.sessions() as session, session.begin():
            state = await queues.set_fairness_in_session(session, name, fairness)
        logger.info("queue fairness set: %s by=%s", name, state.fairness.by or "none")
        return state.fairness

    async def _view(self, session: AsyncSession, queue: str) -> Queue:
        views = await self._views(session, queue)
        if views:
            return views[0]
        view = _empty_view(queue, await job_stats.db_now(session))
        view.consumers = (await self.registry.consumers_in_session(session)).get(queue, 0)
        return view

    async def _views(self, session: AsyncSession, queue: str | None) -> list[Queue]:
        """Views built from four small reads sharing the transaction's clock."""
        now = await job_stats.db_now(session)
        states = {s.queue: s for s in await queues.queue_states(session, queue)}
        live = {c.queue: c for c in await job_stats.live_counts(session, queue)}
        finished = await job_stats.finished_last_hour(session, queue)
        consumers = await self.registry.consumers_in_session(session)
        views: dict[str, Queue] = {}

        def view_of(name: str) -> Queue:
            if name not in views:
                views[name] = _empty_view(name, now)
            return views[name]

        for state in states.values():
            view = view_of(state.queue)
            view.paused, view.paused_at = state.paused, state.paused_at
            view.limits, view.fairness = state.limits, state.fairness
        for counts in live.values():
            view = view_of(counts.queue)
            view.queued, view.running = counts.queued, counts.running
            if counts.oldest_due_at is not None:
                view.oldest_queued_age_sec = max(
                    0.0, round((now - counts.oldest_due_at).total_seconds(), 3)
                )
        first_minute = _minute_start(now) - timedelta(minutes=job_stats.THROUGHPUT_MINUTES - 1)
        for item in finished:
            view = view_of(item.queue)
            _count(view.finished_last_hour, item.status, item.count)
            index = int((item.minute - first_minute).total_seconds() // 60)
            if 0 <= index < len(view.throughput):
                _count(view.throughput[index], item.status, item.count)
        for view in views.values():
            view.consumers = consumers.get(view.queue, 0)
            view.unserved = view.queued > 0 and view.consumers == 0
        return [views[name] for name in sorted(views)]


def _described(limit: RateLimit | None) -> str:
    return "none" if limit is None else f"{limit.count}/{limit.period_sec:g}s"


def _minute_start(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _empty_view(queue: str, now: datetime) -> Queue:
    first = _minute_start(now) - timedelta(minutes=job_stats.THROUGHPUT_MINUTES - 1)
    return Queue(
        queue=queue,
        paused=False,
        paused_at=None,
        queued=0,
        running=0,
        oldest_queued_age_sec=None,
        finished_last_hour=FinishedCounts(),
        throughput=[
            ThroughputMinute(minute=first + timedelta(minutes=i))
            for i in range(job_stats.THROUGHPUT_MINUTES)
        ],
    )
