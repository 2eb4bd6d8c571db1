"""Fleet membership: this worker's dl_workers row, and which live workers serve which queues.

The wake gate (app.jobs.wake_gate) ranks a worker among the live workers serving a queue.
The worker registers at start (its queues, version and tasks: the registry that
/api/v1/workers and /api/v1/tasks show), then says it lives every `refresh_sec` in the
statement that also reads its live peers (those seen within `live_periods` refreshes), and
leaves on a clean stop. A refresh writes no version or tasks: it costs the same one
statement whatever the worker registered. A
worker that died without leaving drops out once its row is that old; until then it may hold
rank 0 for some notices, and the next ranks pick its jobs a few steps later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import __version__
from app.db import workers
from app.jobs.wake_gate import WakeGate

logger = logging.getLogger("worker.membership")


# A worker not seen for this many refresh periods is gone (DL_WORKER_REFRESH_SEC each).
LIVE_PERIODS = 3


def live_window(refresh_sec: float) -> timedelta:
    """How recently a worker refreshing every `refresh_sec` must have been seen to be live."""
    return timedelta(seconds=refresh_sec * LIVE_PERIODS)


@dataclass(frozen=True)
class MembershipConfig:
    """How often a worker refreshes its row, and after how many periods a silent one is gone."""

    refresh_sec: float = 30.0
    live_periods: int = LIVE_PERIODS

    @property
    def live_within(self) -> timedelta:
        """A row seen within this long belongs to a live worker."""
        return timedelta(seconds=self.refresh_sec * self.live_periods)


class Membership:
    """Keeps this worker's dl_workers row and feeds the gate the live peers per queue."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        worker_id: str,
        queues: Mapping[str, int],
        gate: WakeGate,
        config: MembershipConfig | None = None,
        *,
        tasks: Mapping[str, Any] | None = None,
    ) -> None:
        self.sessions = sessions
        self.me = workers.WorkerRow(
            worker_id,
            socket.gethostname(),
            os.getpid(),
            dict(queues),
            version=__version__,
            tasks=dict(tasks or {}),
        )
        self.gate = gate
        self.config = config or MembershipConfig()
        self.stopped = asyncio.Event()

    async def register(self) -> dict[str, list[str]]:
        """Write this worker's whole row (at start) and feed the gate; see run_once()."""
        return await self.run_once(register=True)

    async def run_once(self, *, register: bool = False) -> dict[str, list[str]]:
        """Refresh this worker's row and the gate's peers; returns the live workers per queue.

        A row deleted meanwhile (by hand, or by retention after a long pause) is registered
        again at once: one more statement, only then.
        """
        async with self.sessions() as session, session.begin():
            refreshed = await workers.refresh_in_session(
                session, self.me, self.config.live_within, register=register
            )
        if refreshed.row_was_missing:
            logger.warning("this worker's dl_workers row was gone; registering again")
            return await self.run_once(register=True)
        serving: dict[str, list[str]] = {}
        for peer in refreshed.live:
            for queue in peer.queues:
                serving.setdefault(queue, []).append(peer.worker_id)
        self.gate.set_peers(serving)
        return serving

    async def run(self) -> None:
        """Refresh every period until stopped (the first refresh is the caller's, at start)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), self.config.refresh_sec)
            if self.stopped.is_set():
                return
            try:
                await self.run_once()
            except Exception:  # the database may be away; the gate keeps the last peers
                logger.warning("membership refresh failed", exc_info=True)

    async def leave(self) -> None:
        """Stop refreshing and delete this worker's row (best effort: it also ages out)."""
        self.stopped.set()
        try:
            async with self.sessions() as session, session.begin():
                await workers.remove_in_session(session, self.me.worker_id)
        except Exception:
            logger.warning("could not remove this worker from dl_workers", exc_info=True)
