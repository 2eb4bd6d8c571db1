"""The wake gate: a new job wakes about one idle worker, not every idle worker.

pgqueuer's statement-level trigger NOTIFYs every INSERT and DELETE on its queue table, and
every idle QueueManager wakes on each notice to run a dequeue and up to three probes: with
N idle workers a job costs N times that work, almost all of it finding nothing. The gate sits
in pgqueuer's driver, where pgqueuer registers its LISTEN callback:

- pgqueuer's table-changed notices are dropped, except a `delete` (a completion): sent by
  this worker's own pgqueuer connection, it wakes this worker (one of our slots is free and a
  waiting job may fit); sent by another worker, on a queue with a fleet-wide limit, it wakes
  the rank-0 worker among the live peers too, so freed fleet slots spread over the fleet.
  Cancellation and health-check notices pass untouched.
- Our own dispatch notice (app.db.pgqueuer_tables.DISPATCH_CHANNEL, sent by the statement
  that writes the dispatches) says how many jobs each queue got. Every worker serving the
  queue with a free slot ranks itself among the live workers serving it (dl_workers, kept by
  app.jobs.membership) by rendezvous hashing of the notice id and the worker id; the ranks
  below the number of jobs wake pgqueuer's loop at once. The others look again later (150 ms,
  then 50 ms more per rank) and wake only if, as far as they heard, that notice's jobs still
  wait (dispatched minus answered by a start statement, counted in order up to that notice's
  jobs) and they still have a free slot. That covers a rank-0 worker that is busy, stopped
  or already gone.
- A worker without a free slot does nothing: its own completion wakes it.
- pgqueuer's periodic dequeue (`--dequeue-timeout`) stays as the safety net, so no missed
  notice can leave a job behind for longer than that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

import asyncpg
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.domain import models
from pgqueuer.domain.types import QueueEntrypoint, QueueManagerId
from pgqueuer.ports.driver import NotifyCallback
from pgqueuer.ports.repository import EntrypointExecutionParameter

from app.db.pgqueuer_tables import DISPATCH_CHANNEL

logger = logging.getLogger("worker.wake_gate")

# When the worker of rank n (the first after the n woken at once) looks whether the job is
# taken, and how much later each next rank looks. The first look waits for the woken
# worker's wake, dequeue and start statement and for its `started` notice to come back: a few
# milliseconds on an idle machine, tens on a loaded one (measured with 12 workers on 2 cores,
# a 25 ms first look woke about 2.8 workers per job for nothing).
BACKUP_FIRST_SEC = 0.15
BACKUP_STEP_SEC = 0.05


def backup_delay_sec(rank: int, woken: int) -> float:
    """How long the worker of `rank` waits before it looks, when `woken` ranks woke at once."""
    return BACKUP_FIRST_SEC + (rank - woken) * BACKUP_STEP_SEC


def rank_of(notice_id: str, me: str, peers: Iterable[str]) -> int:
    """This worker's place among `peers` for one notice: 0 wakes first.

    Rendezvous hashing: every worker computes the same order from the notice id alone, so
    nobody coordinates, and successive notices spread over the workers.
    """

    def score(worker: str) -> bytes:
        return hashlib.blake2b(f"{notice_id}/{worker}".encode(), digest_size=8).digest()

    mine = score(me)
    return sum(1 for peer in set(peers) if peer != me and score(peer) > mine)


class WakeGate:
    """Decides, per notice, whether this worker's pgqueuer loop should look for jobs."""

    def __init__(self, worker_id: str, served: Mapping[str, int]) -> None:
        self.worker_id = worker_id
        self.served = dict(served)
        self.peers: dict[str, list[str]] = {queue: [worker_id] for queue in served}
        # Due jobs dispatched and picked dispatches answered, per queue, since start.
        self.dispatched: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        # Set by the worker: whether a queue has room for one more job here.
        self.has_free_slot: Callable[[str], bool] = lambda _queue: True
        self._wake: Callable[[], None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self.wakes = 0  # how often this gate woke pgqueuer (for tests and logs)

    def set_peers(self, peers: Mapping[str, Iterable[str]]) -> None:
        """The live workers serving each queue (this one always among its own queues)."""
        self.peers = {
            queue: sorted({*peers.get(queue, ()), self.worker_id}) for queue in self.served
        }

    def connect(self, wake: Callable[[], None]) -> None:
        """`wake` puts a table-changed event into pgqueuer's loop."""
        self._wake = wake

    def close(self) -> None:
        """Forget scheduled looks (the driver is closing)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._wake = None

    def wake(self) -> None:
        """Wake pgqueuer's loop now."""
        if self._wake is not None:
            self.wakes += 1
            self._wake()

    def on_dispatch(
        self, notice_id: str, queues: Mapping[str, int], due: Mapping[str, int]
    ) -> None:
        """Jobs were dispatched: wake at once, later, or not at all."""
        woken = False
        for queue, count in queues.items():
            if queue not in self.served or count <= 0:
                continue
            self.dispatched[queue] += due.get(queue, count)
            # This notice's jobs count as answered once the answers reach this mark: starts
            # come roughly in dispatch order, and a look must not wake for a newer job
            # whose own rank-0 worker is still on its way.
            mark = self.dispatched[queue]
            if not self.has_free_slot(queue):
                continue  # our own completion wakes us
            rank = rank_of(f"{notice_id}/{queue}", self.worker_id, self.peers[queue])
            if rank < count:
                if not woken:
                    woken = True
                    self.wake()
            else:
                self._look_later(backup_delay_sec(rank, count), queue, mark)

    def on_started(self, queues: Mapping[str, int]) -> None:
        """A start statement answered picked dispatches: they no longer wait."""
        for queue, count in queues.items():
            if queue in self.served:
                # Capped: answers to jobs never counted (not due when dispatched) must not
                # count for later ones.
                self.answered[queue] = min(self.answered[queue] + count, self.dispatched[queue])

    def pending(self, queue: str) -> int:
        """Dispatched jobs of `queue` not yet answered, as far as this worker heard."""
        return self.dispatched[queue] - self.answered[queue]

    def on_peer_completion(self, notice_id: str) -> None:
        """A job completed on another worker: on a queue with a fleet-wide limit, its slot
        may now be free for anyone. The completing worker looks (its own completion wakes
        it); so does the rank-0 worker among the live peers, so the freed slots spread over
        the fleet instead of staying with the workers that took them first. Two looks per
        completion, whatever the size of the fleet."""
        limited = [queue for queue, limit in self.served.items() if limit > 0]
        if not any(self.has_free_slot(queue) for queue in limited):
            return
        peers = {peer for queue in limited for peer in self.peers[queue]}
        if rank_of(notice_id, self.worker_id, peers) == 0:
            self.wake()

    def on_overflow(self) -> None:
        """A dispatch too large to describe: every worker looks once."""
        for queue in self.served:
            self.dispatched[queue] += 1
        self.wake()

    def found_nothing(self, entrypoints: Iterable[str]) -> None:
        """A dequeue came back empty: nothing of these queues waits for us now."""
        for queue in entrypoints:
            if queue in self.served:
                self.answered[queue] = self.dispatched[queue]

    def _look_later(self, delay_sec: float, queue: str, mark: int) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def look() -> None:
            if timer is not None:
                self._timers.discard(timer)
            if self.answered[queue] < mark and self.has_free_slot(queue):
                self.wake()

        timer = loop.call_later(delay_sec, look)
        self._timers.add(timer)

    def on_notice(self, payload: str) -> None:
        """One notice of DISPATCH_CHANNEL."""
        try:
            notice = json.loads(payload)
            kind = notice["kind"]
            if kind == "dispatch":
                if notice.get("overflow"):
                    self.on_overflow()
                else:
                    self.on_dispatch(str(notice["id"]), notice["queues"], notice["due"])
            elif kind == "started":
                self.on_started(notice["queues"])
        except (ValueError, KeyError, TypeError):
            # A notice we cannot read must not stop the listener; the poll still finds work.
            logger.warning("unreadable dispatch notice: %.200s", payload)


@dataclasses.dataclass(frozen=True)
class _GatedListener:
    """pgqueuer's listener behind the gate; asyncpg removes listeners by equality."""

    callback: NotifyCallback
    own_pid: int
    gate: WakeGate = dataclasses.field(compare=False)

    def __call__(self, connection: object, pid: int, channel: str, payload: str) -> None:
        if "table_changed_event" not in payload:
            self.callback(payload)  # cancellations, health checks
        elif _is_delete(payload):
            if pid == self.own_pid:
                self.callback(payload)
            else:
                # Every receiver names the notice alike: sender and payload (with its time).
                self.gate.on_peer_completion(f"{pid}/{payload}")


def _is_delete(payload: str) -> bool:
    """Whether a table-changed notice of pgqueuer's trigger is for a DELETE (a completion)."""
    try:
        return bool(json.loads(payload).get("operation") == "delete")
    except ValueError:
        return False


class GatedDriver(AsyncpgDriver):
    """pgqueuer's asyncpg driver with the wake gate in front of pgqueuer's LISTEN callback.

    Every other method (fetch, execute, notify, listeners on other channels) is pgqueuer's,
    serialized by the same lock, so other users can share this connection.
    """

    def __init__(self, connection: asyncpg.Connection, channel: str, gate: WakeGate) -> None:
        super().__init__(connection)
        self._channel = channel
        self.gate = gate
        self._gated: dict[NotifyCallback, _GatedListener] = {}

    def _dispatch_listener(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self.gate.on_notice(payload)

    async def add_listener(self, channel: str, callback: NotifyCallback) -> None:
        """pgqueuer's channel goes through the gate; any other channel is passed on."""
        if channel != self._channel:
            await super().add_listener(channel, callback)
            return
        listener = _GatedListener(callback, self._connection.get_server_pid(), self.gate)
        async with self._lock:
            await self._connection.add_listener(channel, listener)
            await self._connection.add_listener(DISPATCH_CHANNEL, self._dispatch_listener)
        self._gated[callback] = listener
        self.gate.connect(lambda: callback(self._wake_payload()))

    async def remove_listener(self, channel: str, callback: NotifyCallback) -> None:
        """Undo add_listener."""
        listener = self._gated.pop(callback, None) if channel == self._channel else None
        if listener is None:
            await super().remove_listener(channel, callback)
            return
        self.gate.close()
        async with self._lock:
            await self._connection.remove_listener(channel, listener)
            await self._connection.remove_listener(DISPATCH_CHANNEL, self._dispatch_listener)

    def _wake_payload(self) -> str:
        """A table-changed event as pgqueuer's trigger would send it."""
        return json.dumps(
            {
                "channel": self._channel,
                "operation": "update",
                "sent_at": datetime.now(UTC).isoformat(),
                "table": "pgqueuer",
                "type": "table_changed_event",
            }
        )


@dataclasses.dataclass
class GatedQueries(Queries):
    """pgqueuer's queries, telling the gate when a dequeue found nothing."""

    gate: WakeGate | None = None

    async def dequeue(
        self,
        batch_size: int,
        entrypoints: dict[QueueEntrypoint, EntrypointExecutionParameter],
        queue_manager_id: QueueManagerId,
        global_concurrency_limit: int | None,
        heartbeat_timeout: timedelta,
    ) -> list[models.Job]:
        """pgqueuer's dequeue; an empty answer marks every job of these queues answered."""
        jobs = await super().dequeue(
            batch_size, entrypoints, queue_manager_id, global_concurrency_limit, heartbeat_timeout
        )
        if not jobs and self.gate is not None:
            self.gate.found_nothing(entrypoints)
        return jobs
