"""The worker's lock session: one connection that holds every lock_key lock of this process.

Attempts ask it to start (lock + queued -> running, one statement for every waiting start)
and give locks back when they end (worker.finish_writer hands them back after the final
write commits). Each round first releases, then starts, so a lock freed in a round can be
taken in the same one. Batches form only under load: a lone request is served at once.

Session-level locks stack within one session, so this process also remembers which keys it
holds and never tries one of them again: a second job with a held key is "lock busy".
Concurrency-group slots (app.db.job_batches) are held the same way, in `held_slots`: a job's
slot is taken with its lock_key lock, and given back with it, after the final write.

The seam with app.jobs.batching: starts are the round batcher's requests (waiting futures,
wake-up, the per-round cap, settling, a lost connection putting a round back once), and its
serving task runs each round and the idle ping. Everything about the connection stays here:
the releases (a second kind of pending work, with callbacks, that wakes the batcher for a
round of its own), the held keys, the reconnect with its delay, and the watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from app.domain.attempts import StartAnswer, StartRequest
from app.jobs.availability import connection_gone, database_unreachable
from app.jobs.batching import Round, RoundBatcher
from app.jobs.connections import connect_lock_session
from app.jobs.manager import JobManager
from worker.lock_liveness import LockLiveness

logger = logging.getLogger("worker.lock_session")

T = TypeVar("T")

RECONNECT_DELAY_SEC = 1.0
# Starts served by one statement; more wait for the next round, so a worker that pulled a
# large backlog still sends statements of a bounded size.
MAX_STARTS_PER_ROUND = 500


async def stop_serving(
    task: asyncio.Task[None] | None, connection: asyncpg.Connection | None
) -> None:
    """Cancel a serving task and close its connection."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.close()


def _nothing() -> None:
    return None


def connection_lost(error: BaseException, connection: asyncpg.Connection) -> bool:
    """Whether `error` means the connection is gone (the statement never ran to its end).

    A server-side kill is often noticed only by the next statement, as a protocol error.
    A server that is merely full (SQLSTATE class 53) answered on a live connection: that
    connection, and the locks its session holds, are still good.
    """
    return connection.is_closed() or connection_gone(error)


_Starts = Round[StartRequest, StartAnswer | None]
# A key to unlock (None: only slots), with what to do once it is free (or could not be freed).
_Release = tuple[str | None, Callable[[], None]]


@dataclass
class LockSession:
    """Serves start and release requests for this worker, batched, in one task."""

    dsn: str
    schema: str
    worker_id: str
    liveness: LockLiveness = field(default_factory=lambda: LockLiveness.for_heartbeat(10))
    # Called with the jobs whose locks were lost with the connection and are now held
    # elsewhere: they must stop, or two holders of one lock_key could run at once.
    on_locks_lost: Callable[[list[uuid.UUID]], None] = lambda jobs: None
    held: dict[str, uuid.UUID] = field(default_factory=dict)
    # Concurrency-group slots by name, and the slot of each job holding one.
    held_slots: dict[str, uuid.UUID] = field(default_factory=dict)
    _slot_of: dict[uuid.UUID, str] = field(default_factory=dict)
    _unlock_pending: set[str] = field(default_factory=set)
    _slot_unlock_pending: set[str] = field(default_factory=set)
    _releases: list[_Release] = field(default_factory=list)
    _slot_releases: list[str] = field(default_factory=list)
    _connection: asyncpg.Connection | None = None
    _starts: RoundBatcher[StartRequest, StartAnswer | None] = field(init=False)
    _watchdog: asyncio.Task[None] | None = None
    # When the last statement that came back was sent (monotonic clock).
    _confirmed_at: float = field(default_factory=time.monotonic)
    _in_doubt: bool = False
    _closing: bool = False

    def __post_init__(self) -> None:
        self._jobs = JobManager(self.schema)
        # A start whose caller went away is still sent: a lock it got is given back below.
        self._starts = RoundBatcher(
            self._serve_round,
            MAX_STARTS_PER_ROUND,
            name="lock-session",
            keep_abandoned=True,
            idle_sec=self.liveness.ping_sec,
            on_idle=self._ping,
        )

    async def open(self) -> None:
        """Connect and start serving."""
        self._connection = await self._connect()
        self._confirmed_at = time.monotonic()
        self._starts.start()
        self._watchdog = asyncio.create_task(self._watch_deadline(), name="lock-watchdog")

    async def close(self) -> None:
        """Stop serving and disconnect (the server releases any lock still held)."""
        self._closing = True
        await stop_serving(self._watchdog, None)
        await self._starts.close()
        await stop_serving(None, self._connection)

    async def start(
        self, job_id: uuid.UUID, pgq_job_id: int, *, waited_for_rate: bool = False
    ) -> StartAnswer | None:
        """Lock and start the job of this dispatch; None when it is not startable."""
        return await self._starts.submit(StartRequest(job_id, pgq_job_id, waited_for_rate))

    def release(self, lock_key: str, job_id: uuid.UUID) -> None:
        """Give a job's lock back without a final write (the job was requeued another way).

        Only the job holding the key releases it: a late second release must not free the
        lock of a newer job that took the same key.
        """
        self.release_then(lock_key, job_id, _nothing)

    def release_then(self, lock_key: str, job_id: uuid.UUID, then: Callable[[], None]) -> None:
        """release(), and call `then` once the lock is free (at once if it was not held).

        The job's concurrency slot, if it holds one, is freed in the same round, first.
        """
        slot = self._slot_of.pop(job_id, None)
        if slot is not None and self.held_slots.get(slot) == job_id:
            del self.held_slots[slot]
            self._slot_releases.append(slot)
        if self._forget(lock_key, job_id):
            self._queue_unlock(lock_key, then)
        elif slot is not None:
            self._queue_unlock(None, then)
        else:
            then()

    def _forget(self, lock_key: str, job_id: uuid.UUID) -> bool:
        if self.held.get(lock_key) != job_id:
            return False
        del self.held[lock_key]
        return True

    def _queue_unlock(self, lock_key: str | None, then: Callable[[], None] = _nothing) -> None:
        self._releases.append((lock_key, then))
        self._starts.wake()

    def _queue_slot_unlock(self, slot: str) -> None:
        self._slot_releases.append(slot)
        self._starts.wake()

    async def _connect(self) -> asyncpg.Connection:
        connection = await connect_lock_session(
            self.dsn, self.worker_id, self.liveness.server_settings()
        )
        connection.add_termination_listener(self._connection_ended)
        return connection

    def _connection_ended(self, connection: asyncpg.Connection) -> None:
        """The session is gone, and every lock it held with it: their jobs must stop now.

        They stay in `held`, so the next round takes their locks again while they stop.
        """
        if self._closing or connection is not self._connection or not self.held:
            return
        logger.error(
            "lock session's connection ended: its %d lock(s) went with it; stopping those jobs",
            len(self.held),
        )
        self.on_locks_lost(list(self.held.values()))
        self._starts.wake()  # reconnect, and take the locks back, without waiting for work

    async def _watch_deadline(self) -> None:
        """Stop every job holding a lock once the session has been silent past the deadline."""
        while True:
            await asyncio.sleep(min(0.25, self.liveness.ping_sec))
            silent_for = time.monotonic() - self._confirmed_at
            if silent_for <= self.liveness.deadline_sec or not self.held:
                self._in_doubt = False
                continue
            if not self._in_doubt:
                logger.error(
                    "lock session silent for %.1fs: its %d lock(s) may be freed by the server;"
                    " stopping those jobs",
                    silent_for,
                    len(self.held),
                )
            self._in_doubt = True
            self.on_locks_lost(list(self.held.values()))

    async def _round_trip(self, statement: Awaitable[T]) -> T:
        """Await a statement on the lock session; its coming back confirms the session."""
        sent = time.monotonic()
        result = await statement
        self._confirmed_at = max(self._confirmed_at, sent)
        return result

    async def _ping(self) -> None:
        """Prove the session (and so its locks) is alive while it holds locks and idles."""
        connection = self._connection
        if not self.held or connection is None or connection.is_closed():
            return
        try:
            await self._round_trip(self._jobs.ping(connection))
        except Exception as exc:
            if not connection_lost(exc, connection):
                raise
            logger.warning("lock session ping failed: %s", exc)
            connection.terminate()

    async def _serve_round(self, starts: _Starts) -> None:
        """One round: the releases waiting now, then the starts the batcher handed over."""
        releases, self._releases = self._releases, []
        slot_releases, self._slot_releases = self._slot_releases, []
        try:
            connection = await self._usable_connection()
        except Exception as exc:
            failure: Exception = exc
            if database_unreachable(exc):
                # Down, restarting or out of connection slots: expected, and the runner
                # sends these starts again; a traceback per second would say nothing more.
                logger.warning(
                    "lock session cannot reach the database: %s: %s", type(exc).__name__, exc
                )
                failure = ConnectionError("lock session has no database connection")
            else:
                logger.exception("lock session cannot connect")
            self._fail_all(starts, releases, failure)
            await asyncio.sleep(RECONNECT_DELAY_SEC)
            return
        await self._unlock_slots(connection, slot_releases)
        await self._unlock(connection, releases)
        await self._start(connection, starts)

    async def _usable_connection(self) -> asyncpg.Connection:
        """The connection, reopened after a loss; locks lost with it are taken again."""
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        connection = await self._connect()
        self._unlock_pending.clear()  # the old session's locks died with it
        self._slot_unlock_pending.clear()
        taken: list[str] = []
        taken_slots: list[str] = []
        if self.held or self.held_slots:
            try:
                taken = await self._round_trip(
                    self._jobs.relock_keys(connection, list(self.held)),
                )
                if self.held_slots:
                    taken_slots = await self._round_trip(
                        self._jobs.relock_slots(connection, list(self.held_slots)),
                    )
            except BaseException:
                # Not usable until every held lock is back: the next round starts over.
                connection.terminate()
                raise
        self._connection = connection
        lost = [self.held.pop(key) for key in taken]
        # A slot taken by another worker meanwhile: its group may already run its limit.
        for slot in taken_slots:
            job_id = self.held_slots.pop(slot)
            self._slot_of.pop(job_id, None)
            lost.append(job_id)
        if lost:
            logger.error(
                "lock session reconnected; %d lock(s) now held elsewhere: stopping those jobs",
                len(lost),
            )
            self.on_locks_lost(lost)
        return connection

    async def _unlock_slots(self, connection: asyncpg.Connection, slots: list[str]) -> None:
        """Give slots back; one that could not be is treated as held until it is."""
        names = [*self._slot_unlock_pending, *slots]
        if not names:
            return
        try:
            await self._round_trip(self._jobs.unlock_slots(connection, names))
        except Exception:
            logger.exception("releasing %d slot(s) failed; retrying next round", len(names))
            self._slot_unlock_pending.update(names)
            self._starts.wake()
        else:
            self._slot_unlock_pending.clear()

    async def _unlock(self, connection: asyncpg.Connection, releases: list[_Release]) -> None:
        keys = [*self._unlock_pending, *(key for key, _ in releases if key is not None)]
        if not keys:
            for _, then in releases:
                then()
            return
        try:
            await self._round_trip(self._jobs.unlock_keys(connection, keys))
        except Exception:
            # Until they are released, treat them as held so no start stacks on them.
            logger.exception("releasing %d lock(s) failed; retrying next round", len(keys))
            self._unlock_pending.update(keys)
            self._starts.wake()
        else:
            self._unlock_pending.clear()
        for _, then in releases:
            then()

    async def _start(self, connection: asyncpg.Connection, starts: _Starts) -> None:
        if not starts:
            return
        requests = starts.requests
        blocked = [*self.held, *self._unlock_pending]
        blocked_slots = [*self.held_slots, *self._slot_unlock_pending]
        try:
            answers = await self._round_trip(
                self._jobs.start_many(connection, requests, blocked, self.worker_id, blocked_slots),
            )
        except Exception as exc:
            if connection_lost(exc, connection) and not starts.retried:
                # Its locks went with it; the next round reconnects, retakes the held
                # locks, and tries these starts again (once: a second loss fails them).
                logger.warning("lock session lost its connection; reconnecting")
                connection.terminate()
                self._starts.put_back(starts)
                return
            logger.exception("starting %d attempt(s) failed", len(requests))
            await self._release_strays(connection)
            starts.fail_all(exc)
            return
        answered: set[tuple[uuid.UUID, int]] = set()
        for entry in starts:
            request = entry.request
            # The answer belongs to the dispatch it was given for, once: an older dispatch
            # of the job (re-picked by pgqueuer) or a second ask of this one gets nothing.
            dispatch = (request.job_id, request.pgq_job_id)
            answer = answers.get(request.job_id)
            if answer is None or answer.pgq_job_id != request.pgq_job_id or dispatch in answered:
                answer = None
            answered.add(dispatch)
            if answer is not None and answer.got_lock and entry.abandoned:
                # Its caller was cancelled while waiting: nobody will run the attempt, so
                # give the lock back; the expired lease sends the job back to the queue.
                logger.warning("start of job %s abandoned by its caller", request.job_id)
                self._give_back(answer)
            elif answer is not None and answer.attempt is not None:
                self.held[answer.lock_key] = request.job_id
                if answer.slot is not None:
                    self.held_slots[answer.slot] = request.job_id
                    self._slot_of[request.job_id] = answer.slot
            elif answer is not None and answer.got_lock:
                # The job changed between lock and start, or its group had no free slot.
                self._give_back(answer)
            entry.settle(answer)

    def _give_back(self, answer: StartAnswer) -> None:
        """Free what a start took for an attempt that will not run: its lock and its slot."""
        if answer.slot is not None:
            self._queue_slot_unlock(answer.slot)
        self._queue_unlock(answer.lock_key)

    async def _release_strays(self, connection: asyncpg.Connection) -> None:
        """After a failed start, drop locks it may have taken (they survive the rollback)."""
        if connection.is_closed():
            return
        try:
            await self._jobs.release_unowned_locks(
                connection,
                [*self.held, *self._unlock_pending],
                [*self.held_slots, *self._slot_unlock_pending],
            )
        except Exception:
            logger.exception("could not release stray locks; reconnecting")
            with contextlib.suppress(Exception):
                await connection.close()

    def _fail_all(self, starts: _Starts, releases: list[_Release], error: BaseException) -> None:
        """No connection: nothing was written, and its locks went with the old session."""
        starts.fail_all(error)
        self._slot_unlock_pending.clear()
        for _, then in releases:
            then()  # the lost connection took its locks with it
