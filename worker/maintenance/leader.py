"""Leader election by a session advisory lock; the leader starts and stops maintenance services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.jobs import leadership
from worker.maintenance.service import MaintenanceService, require_positive, wait_unless_stopped

logger = logging.getLogger("worker.leader")

# A leader whose process hangs (SIGSTOP, a blocked event loop, a frozen VM) keeps its
# connection, and so the lock, open. The server closes a session idle for this many
# periods, which frees the lock for another worker; a live leader pings every period.
IDLE_PERIODS = 3
MIN_IDLE_SEC = 2.0
PERIOD_SEC_DEFAULT = 10.0


@dataclass(frozen=True)
class LeaderConfig:
    """How often the election runs, and so how soon the server frees a hung leader's lock."""

    # A worker that does not lead tries to every period (DL_REAPER_PERIOD_SEC), and the
    # leader proves its session alive as often. A leader whose service failed resigns and
    # stands again a period later; one whose session the server closed stands again at once.
    period_sec: float = PERIOD_SEC_DEFAULT

    def __post_init__(self) -> None:
        """Reject a period that is not above zero."""
        require_positive(self, period_sec=self.period_sec)

    @property
    def idle_session_timeout_ms(self) -> int:
        """The session's idle_session_timeout: IDLE_PERIODS periods, at least MIN_IDLE_SEC."""
        return int(max(self.period_sec * IDLE_PERIODS, MIN_IDLE_SEC) * 1000)


class LeadershipLostError(Exception):
    """The server closed the leader's session, and the lock went with it."""


@dataclass
class MaintenanceLeader:
    """Tries to lead every period; while it leads, the services run, each in its own loop.

    Winning the election starts the services (a new term: each begins with a pass unless it
    keeps a cadence of its own); losing the session, a failing service or stopping ends the
    term: the services are stopped, each after the pass it is in, and the lock is given up.
    Before each pass a service proves, through `confirm()`, that the lock is still held.
    """

    dsn: str
    services: Sequence[MaintenanceService]
    config: LeaderConfig = field(default_factory=LeaderConfig)
    # Names the leader connection in pg_stat_activity.
    worker_id: str | None = None
    connection: Any = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    # The running term: its services' loops and the event that stops them.
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)
    _term_stopped: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    # The services and the election share one connection: one statement at a time on it.
    _session_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    # When a ping last proved the session alive (time.monotonic()).
    _confirmed_at: float = field(default=float("-inf"), init=False, repr=False)

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the leader lock now."""
        return self.connection is not None and not self.connection.is_closed()

    async def elect(self) -> bool:
        """One election: whether this process leads (a leader's session proves it is alive)."""
        if self.connection is not None and self.connection.is_closed():
            # The server closed the session (idle timeout, restart): the lock went with it.
            logger.warning("lost maintenance leadership: the leader connection was closed")
            await self._stop_services()
            self.connection = None
        if self.is_leader:
            # A service's guard that pinged within the period proved as much, and the next
            # election pings if none does: a lost session is still found within a period,
            # and the session is never idle for its timeout.
            if time.monotonic() - self._confirmed_at >= self.config.period_sec:
                await self.confirm()
            return True
        connection = await leadership.stand(
            self.dsn, self.worker_id, self.config.idle_session_timeout_ms
        )
        if connection is None:
            return False
        self.connection = connection
        logger.info("became maintenance leader")
        return True

    async def confirm(self) -> None:
        """Prove that the lock's session is still ours, and keep it from the idle timeout.

        Raises LeadershipLostError when the server closed the session, and whatever the ping
        raises when the connection fails.
        """
        async with self._session_lock:
            connection = self.connection
            if connection is None or connection.is_closed():
                raise LeadershipLostError
            await leadership.confirm(connection)
            self._confirmed_at = time.monotonic()

    async def run(self) -> None:
        """Lead whenever possible until stopped; an error resigns, and the loop goes on."""
        try:
            while not self.stopped.is_set():
                try:
                    if await self.elect():
                        self._start_services()
                        await self._watch_services(self.config.period_sec)
                        continue
                except LeadershipLostError:
                    continue  # the election says so, and stands again at once
                except Exception:
                    logger.warning("maintenance failed; resigning the leadership", exc_info=True)
                    await self.resign()
                await wait_unless_stopped(self.stopped, self.config.period_sec)
        finally:
            await self.resign()

    async def resign(self) -> None:
        """Stop the services, then give the lock up with its session."""
        await self._stop_services()
        connection, self.connection = self.connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await connection.close()

    def _start_services(self) -> None:
        """Start a term, unless one is running: each service in its own loop."""
        if self._tasks:
            return
        self._term_stopped = asyncio.Event()
        self._tasks = [
            asyncio.create_task(
                service.run(self._term_stopped, self.confirm),
                name=f"maintenance {type(service).__name__}",
            )
            for service in self.services
        ]

    async def _watch_services(self, seconds: float) -> None:
        """Wait `seconds`, or until stopped, while the term runs; raise why a service ended."""
        stopping = asyncio.create_task(self.stopped.wait())
        try:
            done, _ = await asyncio.wait(
                {stopping, *self._tasks}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
        for task in done - {stopping}:
            if task.cancelled():
                raise RuntimeError(f"{task.get_name()} was cancelled")
            # A service's loop only returns once its term is stopped, which this is not.
            raise task.exception() or RuntimeError(f"{task.get_name()} stopped by itself")

    async def _stop_services(self) -> None:
        """End the term: each service stops after the pass it is in."""
        tasks, self._tasks = self._tasks, []
        self._term_stopped.set()
        # What made a service fail was raised by _watch_services already.
        await asyncio.gather(*tasks, return_exceptions=True)
