"""JobWatch: one LISTEN connection per process, fanning job changes out to stream clients.

Migration 0006's trigger notifies `dl_job_changes` with the ids of jobs whose status,
progress or cancel flag changed. This process listens on one dedicated connection (never a
pooled one), and for each batch of notifications about watched jobs reads those jobs once,
whatever the number of clients watching them, then hands each client the new Job.

The trigger notifies only while some listener is connected, since notifying commits cannot
share WAL flushes. So the connection opens with the first client and closes after
`idle_close_sec` without any. A change made while it was down sent no notification, so every
(re)connection waits for the writers then at work and reads all watched jobs again. A
client that subscribes also gets a fresh read, which covers changes between its first read
and its subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.job_changes import (
    changed_job_ids,
    connect_listener,
    ping_listener,
    wait_for_writers,
)
from app.db.jobs import get_jobs
from app.domain.states import FINAL_STATUSES
from app.domain.views import Job

logger = logging.getLogger("app.jobs.job_watch")


@dataclass(frozen=True)
class JobWatchConfig:
    """Timings of the listener; the defaults suit production."""

    # Wait before reconnecting after the connection was lost, and before retrying a read.
    retry_delay_sec: float = 1.0
    # A silent network loss is noticed by this round trip on the idle connection; idleness
    # is checked as often.
    ping_interval_sec: float = 15.0
    ping_timeout_sec: float = 5.0
    # With no client for this long the connection closes and the trigger stops notifying.
    idle_close_sec: float = 30.0
    # Longest wait, after connecting, for transactions that wrote dl_jobs unannounced.
    writers_wait_sec: float = 5.0
    # Views waiting for one slow client; older ones are dropped (each view is complete).
    queue_size: int = 64


@dataclass(eq=False)
class Subscription:
    """One client's interest in one job: the views it has not consumed yet.

    None in the queue means the stream must end (the job is gone or the watch closed).
    """

    job_key: str
    queue: asyncio.Queue[Job | None]

    def push(self, item: Job | None) -> None:
        """Queue `item`; when the client lags, drop its oldest view to make room."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(item)


@dataclass
class JobWatch:
    """Watches jobs for this process's stream clients; start() is lazy, close() at shutdown."""

    sessions: async_sessionmaker[AsyncSession]
    dsn: str
    schema: str
    config: JobWatchConfig = field(default_factory=JobWatchConfig)
    # Keyed by the job id as PostgreSQL spells it, so a notification needs no parsing.
    _subscribers: dict[str, set[Subscription]] = field(default_factory=dict)
    _pending: set[str] = field(default_factory=set)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _listening: asyncio.Event = field(default_factory=asyncio.Event)
    _wanted: asyncio.Event = field(default_factory=asyncio.Event)  # someone subscribed
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _closed: bool = False
    _reading: bool = False
    # Batch reads done so far: one per batch of notifications, whatever the watcher count.
    reads: int = 0

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up now."""
        return self._listening.is_set()

    def subscriber_count(self) -> int:
        """How many client subscriptions are open."""
        return sum(len(subs) for subs in self._subscribers.values())

    def has_pending_reads(self) -> bool:
        """Whether a read is under way or waiting for its turn."""
        return self._reading or any(key in self._subscribers for key in self._pending)

    def start(self) -> None:
        """Start the listener and the reader, unless they run already."""
        if self._tasks or self._closed:
            return
        self._tasks = [
            asyncio.create_task(self._listen(), name="job-watch-listen"),
            asyncio.create_task(self._deliver(), name="job-watch-deliver"),
        ]

    async def close(self) -> None:
        """Stop listening and end every open stream."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for subs in self._subscribers.values():
            for subscription in subs:
                subscription.push(None)

    async def follow(self, first: Job, *, keepalive_sec: float) -> AsyncGenerator[Job | None]:
        """`first`, then the job after each change, ending after a final status.

        Yields None after `keepalive_sec` without a change (a keep-alive tick). Ends early
        when the job disappears or the watch closes. Closing the iterator (a client that
        went away) ends the subscription.
        """
        if first.status in FINAL_STATUSES or self._closed:
            yield first
            return
        subscription = self._subscribe(str(first.job_id))
        try:
            yield first
            last = first
            while True:
                try:
                    item = await asyncio.wait_for(subscription.queue.get(), keepalive_sec)
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    return
                if item == last:  # a notification about a change `first` already showed
                    continue
                last = item
                yield item
                if item.status in FINAL_STATUSES:
                    return
        finally:
            self._unsubscribe(subscription)

    def _subscribe(self, job_key: str) -> Subscription:
        self.start()
        subscription = Subscription(job_key, asyncio.Queue(maxsize=self.config.queue_size))
        self._subscribers.setdefault(job_key, set()).add(subscription)
        self._wanted.set()
        # A fresh read, chosen after the subscription exists: it sees any change made since
        # the caller's first read, and every later read is newer still.
        self._pending.add(job_key)
        self._wakeup.set()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        subs = self._subscribers.get(subscription.job_key)
        if subs is None:
            return
        subs.discard(subscription)
        if not subs:
            del self._subscribers[subscription.job_key]
            self._pending.discard(subscription.job_key)

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        """asyncpg's callback: note the watched jobs among the changed ones."""
        watched = [key for key in changed_job_ids(payload) if key in self._subscribers]
        if watched:
            self._pending.update(watched)
            self._wakeup.set()

    async def _listen(self) -> None:
        """Keep one LISTEN connection up while there are clients, reconnecting after a loss."""
        failures = 0  # in a row: an outage logs its first failure, then one a minute or so
        while True:
            await self._wanted.wait()
            lost = asyncio.Event()
            connection: asyncpg.Connection | None = None
            try:
                connection = await connect_listener(self.dsn, self._on_notification)
                connection.add_termination_listener(functools.partial(_set_event, lost))
                if not await wait_for_writers(
                    connection, self.schema, self.config.writers_wait_sec
                ):
                    logger.warning("job watch: a long transaction on dl_jobs; not waiting longer")
                self._listening.set()
                failures = 0
                # Changes made while nobody listened sent no notification: read every job.
                self._pending.update(self._subscribers)
                self._wakeup.set()
                if await self._hold(connection, lost):
                    continue  # idle: closed on purpose
                logger.warning("job watch: listening connection lost; reconnecting")
            except Exception as exc:  # connection refused, killed mid-ping, ping timeout
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    logger.warning(
                        "job watch: listening connection failed (%d in a row): %r; retrying",
                        failures,
                        exc,
                    )
            finally:
                self._listening.clear()
                if connection is not None:
                    connection.terminate()
            await asyncio.sleep(self.config.retry_delay_sec)

    async def _hold(self, connection: asyncpg.Connection, lost: asyncio.Event) -> bool:
        """Listen until the connection is lost (False) or no client came for a while (True)."""
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        while not lost.is_set():
            if self._subscribers:
                idle_since = None
            elif idle_since is None:
                idle_since = loop.time()
            elif loop.time() - idle_since >= self.config.idle_close_sec:
                self._wanted.clear()
                return True
            try:
                await asyncio.wait_for(lost.wait(), self.config.ping_interval_sec)
            except TimeoutError:
                await asyncio.wait_for(ping_listener(connection), self.config.ping_timeout_sec)
        return False

    async def _deliver(self) -> None:
        """Read the jobs that changed, once per batch, and hand each watcher the new view."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # Recipients are fixed before the read, so nobody gets a view read before it
            # subscribed (which could be older than its first view).
            batch = {
                key: list(self._subscribers[key])
                for key in self._pending
                if key in self._subscribers
            }
            self._pending.clear()
            if not batch:
                continue
            self._reading = True
            try:
                async with self.sessions() as session:
                    rows = await get_jobs(session, [uuid.UUID(key) for key in batch])
                    views = {str(row.job_id): Job.from_row(row) for row in rows}
            except Exception as exc:  # the database may be back at the next try
                logger.warning("job watch: reading %d jobs failed: %r", len(batch), exc)
                self._pending.update(batch)
                await asyncio.sleep(self.config.retry_delay_sec)
                self._wakeup.set()
                continue
            finally:
                self._reading = False
            self.reads += 1
            for key, subs in batch.items():
                view = views.get(key)  # None: the job was deleted; its streams end
                for subscription in subs:
                    subscription.push(view)


def _set_event(event: asyncio.Event, _connection: Any) -> None:
    """asyncpg's termination callback: the connection is gone."""
    event.set()
