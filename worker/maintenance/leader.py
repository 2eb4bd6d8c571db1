"""Leader election by a session advisory lock; the leader starts and stops maintenance services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pgqueuer.ports.driver import Driver

from app.jobs import leadership
from app.jobs.availability import connection_gone
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

    The lock lives on `session`, the worker's pgqueuer connection (app.jobs.leadership):
    when the server closes it, the worker's run restarts with a new one, and a new leader.
    """

    session: Driver
    services: Sequence[MaintenanceService]
    config: LeaderConfig = field(default_factory=LeaderConfig)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _leading: bool = field(default=False, init=False)
    # The running term: its services' loops and the event that stops them.
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)
    _term_stopped: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    # When a ping last proved the session alive (time.monotonic()).
    _confirmed_at: float = field(default=float("-inf"), init=False, repr=False)

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the leader lock now (as far as it last heard)."""
        return self._leading

    async def elect(self) -> bool:
        """One election: whether this process leads (a leader's session proves it is alive)."""
        if self._leading:
            # A service's guard that pinged within the period proved as much, and the next
            # election pings if none does: a lost session is still found within a period,
            # and the session is never idle for its timeout.
            if time.monotonic() - self._confirmed_at < self.config.period_sec:
                return True
            try:
                await self.confirm()
            except LeadershipLostError:
                await self._stop_services()
                return False
            return True
        if not await leadership.stand(self.session, self.config.idle_session_timeout_ms):
            return False
        self._leading = True
        logger.info("became maintenance leader")
        return True

    async def confirm(self) -> None:
        """Prove that the lock's session is still ours, and keep it from the idle timeout.

        Raises LeadershipLostError when the session is gone (the server closed it: idle
        timeout, restart), and whatever else the ping raises.
        """
        if not self._leading:
            raise LeadershipLostError
        try:
            await leadership.confirm(self.session)
        except Exception as exc:
            if not connection_gone(exc):
                raise
            # The lock went with the session.
            logger.warning("lost maintenance leadership: the leader connection was closed")
            self._leading = False
            raise LeadershipLostError from exc
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
                    await self._stop_services()  # a service's guard found the session gone
                except Exception:
                    logger.warning("maintenance failed; resigning the leadership", exc_info=True)
                    await self.resign()
                await wait_unless_stopped(self.stopped, self.config.period_sec)
        finally:
            await self.resign()

    async def resign(self) -> None:
        """Stop the services, then give the lock up (the session stays pgqueuer's)."""
        await self._stop_services()
        if self._leading:
            self._leading = False
            with contextlib.suppress(Exception):
                await leadership.step_down(self.session)

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
