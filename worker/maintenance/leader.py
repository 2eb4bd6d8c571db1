"""Leader election by a session advisory lock, and the maintenance loop the leader runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.db import locks
from app.jobs.connections import connect_leader
from worker.maintenance.reaper import Reaper
from worker.maintenance.retention import Retention
from worker.maintenance.scheduler import Scheduler

logger = logging.getLogger("worker.leader")

# Any fixed number; every worker of one database competes for it.
LEADER_LOCK_ID = 0x646C5F6C65616472  # "dl_leadr"
# A leader whose process hangs (SIGSTOP, a blocked event loop, a frozen VM) keeps its
# connection, and so the lock, open. The server closes a session idle for this many
# periods, which frees the lock for another worker; a live leader pings every period.
IDLE_PERIODS = 3
MIN_IDLE_SEC = 2.0
# Wake a little after a fire time, so the schedule is due by the database clock.
FIRE_SLACK_SEC = 0.01
MIN_SLEEP_SEC = 0.01


@dataclass
class MaintenanceLoop:
    """Tries to become leader each period; the leader reaps, fires due schedules, prunes.

    `period_sec` paces the reaper and a non-leader's attempts to lead. The leader looks for
    due schedules at least every `schedule_period_sec`, and wakes at the next fire time when
    that comes sooner, so a schedule fires on time. Retention runs last, every
    `retention_period_sec`, or every `period_sec` while a backlog remains.
    """

    dsn: str
    reaper: Reaper
    scheduler: Scheduler
    period_sec: float
    schedule_period_sec: float
    retention: Retention | None = None
    retention_period_sec: float = 300.0
    # Names the leader connection in pg_stat_activity.
    worker_id: str | None = None
    connection: Any = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _next_reap: float = 0.0
    # Not reset on resigning: a worker that leads again keeps the cadence; a new leader
    # (a fresh process) prunes in its first tick.
    _next_retention: float = 0.0

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the leader lock now."""
        return self.connection is not None and not self.connection.is_closed()

    async def _elect(self) -> bool:
        if self.connection is not None and self.connection.is_closed():
            # The server closed the session (idle timeout, restart): the lock went with it.
            logger.warning("lost maintenance leadership: the leader connection was closed")
            self.connection = None
        if self.is_leader:
            # Proves the lock's session is still ours and keeps it from the idle timeout;
            # raises when the server closed it, and the loop then resigns.
            await self.connection.execute("SELECT 1")
            return True
        connection = await connect_leader(self.dsn, self.worker_id)
        # Set here, not at connect: it follows this loop's period, and a server without
        # the setting must still elect a leader (as a startup parameter it refuses the login).
        idle_ms = int(max(self.period_sec * IDLE_PERIODS, MIN_IDLE_SEC) * 1000)
        with contextlib.suppress(asyncpg.PostgresError):  # idle_session_timeout: PostgreSQL 14+
            await connection.execute(f"SET idle_session_timeout = {idle_ms}")
        if await locks.try_lock_id(connection, LEADER_LOCK_ID):
            self.connection = connection
            logger.info("became maintenance leader")
            return True
        await connection.close()
        return False

    async def tick(self) -> float:
        """One pass: elect; when leading, reap (each period), fire due schedules, prune.

        Returns how long to sleep before the next pass.
        """
        if not await self._elect():
            return self.period_sec
        if time.monotonic() >= self._next_reap:
            await self.reaper.run_once()
            self._next_reap = time.monotonic() + self.period_sec
        result = await self.scheduler.run_once()
        next_fire = None
        if result.next_due_in_sec is not None:
            next_fire = time.monotonic() + result.next_due_in_sec + FIRE_SLACK_SEC
        if self.retention is not None and time.monotonic() >= self._next_retention:
            self._next_retention = time.monotonic() + await self._prune(self.retention)
        now = time.monotonic()
        wait = min(self.schedule_period_sec, self._next_reap - now)
        if next_fire is not None:
            wait = min(wait, next_fire - now)
        if self.retention is not None:
            wait = min(wait, self._next_retention - now)
        return max(wait, MIN_SLEEP_SEC)

    async def _prune(self, retention: Retention) -> float:
        """One retention pass; returns the seconds until the next one.

        A failed pass is logged and tried again a period later: it keeps the leadership,
        since the reaper and the scheduler, which ran before it, are what needs the leader.
        """
        try:
            result = await retention.run_once()
        except Exception:
            logger.warning("retention pass failed; will retry", exc_info=True)
            return self.retention_period_sec
        if result.more_remain:
            return min(self.period_sec, self.retention_period_sec)
        return self.retention_period_sec

    async def run(self) -> None:
        """Tick until stopped; errors are logged, leadership given up, and the loop goes on."""
        while not self.stopped.is_set():
            wait = self.period_sec
            try:
                wait = await self.tick()
            except Exception:
                logger.warning("maintenance tick failed", exc_info=True)
                await self._resign()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), wait)
        await self._resign()

    async def _resign(self) -> None:
        self._next_reap = 0.0  # a new term starts with a reaper pass
        connection, self.connection = self.connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await connection.close()
