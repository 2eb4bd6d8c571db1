"""worker.lock_session.LockSession against a real database: one connection, every lock."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.attempts import FinishRequest, StartedAttempt
from app.domain.spec import JobCreate
from app.domain.states import JobEvent, JobStatus
from app.jobs.enqueue import enqueue_many_in_session
from app.jobs.manager import JobManager
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.waiting import wait_until
from worker.finish_writer import FinishWriter
from worker.lock_session import LockSession

load_pipelines()  # the built-in `noop`, as a worker would have it

WORKER_ID = "lock-session-test"
WAIT_SEC = 10.0  # bound for conditions that need the server to act (a closed backend)


@dataclass(frozen=True)
class Queued:
    """A committed queued job and its current pgqueuer dispatch."""

    job_id: uuid.UUID
    pgq_job_id: int
    lock_key: str


@pytest.fixture
async def lock_session(database_dsn: str, settings: Settings) -> AsyncIterator[LockSession]:
    """An open lock session, closed after the test."""
    session = LockSession(database_dsn, settings.pg_schema_queue, WORKER_ID)
    await session.open()
    yield session
    await session.close()


@pytest.fixture
async def finishes(database_dsn: str, lock_session: LockSession) -> AsyncIterator[FinishWriter]:
    """The finish writer that hands locks back to `lock_session`."""
    writer = FinishWriter(database_dsn, lock_session)
    await writer.open()
    yield writer
    await writer.close()


@dataclass
class Enqueuer:
    """Creates committed queued jobs the way producers do."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    db: asyncpg.Connection

    async def __call__(self, *lock_keys: str, **overrides: object) -> list[Queued]:
        """Commit one queued `noop` job per lock key; returns them in order."""
        specs = [
            JobCreate(
                queue="etl.locks",
                task="noop",
                lock_key=key,
                args={"i": index},
                **overrides,  # type: ignore[arg-type]
            )
            for index, key in enumerate(lock_keys)
        ]
        async with self.sessions() as session, session.begin():
            results = await enqueue_many_in_session(session, specs, self.settings)
        rows = await self.db.fetch(
            "SELECT job_id, pgq_job_id, lock_key FROM dl_jobs WHERE job_id = ANY($1::uuid[])",
            [r.job_id for r in results],
        )
        by_id = {row["job_id"]: row for row in rows}
        return [
            Queued(r.job_id, by_id[r.job_id]["pgq_job_id"], by_id[r.job_id]["lock_key"])
            for r in results
        ]


@pytest.fixture
def enqueue(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> Enqueuer:
    return Enqueuer(sessions, settings, db)


async def lock_free(db: asyncpg.Connection, lock_key: str) -> bool:
    """Whether another connection can take the key's lock now (given back at once)."""
    got = bool(await db.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", lock_key))
    if got:
        await db.fetchval("SELECT pg_advisory_unlock(hashtextextended($1, 0))", lock_key)
    return got


async def advisory_locks(db: asyncpg.Connection) -> int:
    """Advisory locks granted in this test's database, to anyone."""
    return int(
        await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )


async def wait_lock_free(db: asyncpg.Connection, lock_key: str) -> None:
    """Until another connection can take the key (a lock is given back after the write)."""

    async def free() -> bool:
        return await lock_free(db, lock_key)

    done: bool = await wait_until(free, timeout=WAIT_SEC, what=f"lock {lock_key!r} freed")
    assert done


async def wait_no_advisory_locks(db: asyncpg.Connection) -> None:
    """Until nobody holds an advisory lock in this database (a closed backend lets go)."""

    async def none_left() -> bool:
        return await advisory_locks(db) == 0

    done: bool = await wait_until(none_left, timeout=WAIT_SEC, what="no advisory locks")
    assert done


async def job_row(db: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record:
    row: asyncpg.Record = await db.fetchrow("SELECT * FROM dl_jobs WHERE job_id = $1", job_id)
    return row


async def events(db: asyncpg.Connection, job_id: uuid.UUID) -> list[tuple[str, int]]:
    rows = await db.fetch(
        "SELECT event, attempt FROM dl_job_events WHERE job_id = $1 ORDER BY id", job_id
    )
    return [(r["event"], r["attempt"]) for r in rows]


async def start_ok(lock_session: LockSession, job: Queued) -> StartedAttempt:
    """Start the job, which must start; its attempt."""
    answer = await lock_session.start(job.job_id, job.pgq_job_id)
    assert answer is not None
    assert answer.attempt is not None, answer
    return answer.attempt


def succeeded(job: Queued, attempt: int = 1, **extra: object) -> FinishRequest:
    return FinishRequest(
        job_id=job.job_id,
        attempt=attempt,
        status=JobStatus.SUCCEEDED,
        event=JobEvent.SUCCEEDED,
        **extra,  # type: ignore[arg-type]
    )


async def test_start_queued_job_runs_attempt_one_and_holds_its_lock(
    db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    [job] = await enqueue("customer-1", priority=7, max_attempts=3, lease_ttl_sec=45)

    answer = await lock_session.start(job.job_id, job.pgq_job_id)

    assert answer is not None
    assert answer.attempt is not None
    assert answer.lock_busy is False
    assert answer.got_lock is True
    assert answer.lock_key == "customer-1"
    started = answer.attempt
    assert started.job_id == job.job_id
    assert started.attempt == 1
    assert (started.queue, started.task, started.lock_key) == ("etl.locks", "noop", "customer-1")
    assert started.args == {"i": 0}
    assert (started.priority, started.max_attempts, started.lease_ttl_sec) == (7, 3, 45)
    row = await job_row(db, job.job_id)
    assert row["status"] == "running"
    assert row["attempt"] == 1
    assert row["worker_id"] == WORKER_ID
    assert row["started_at"] is not None
    assert row["heartbeat_at"] is not None
    assert row["lease_expires_at"] is not None
    assert row["finished_at"] is None
    assert await events(db, job.job_id) == [("queued", 0), ("started", 1)]
    details = await db.fetchval(
        "SELECT details FROM dl_job_events WHERE job_id = $1 AND event = 'started'", job.job_id
    )
    assert json.loads(details) == {"worker_id": WORKER_ID}
    assert await lock_free(db, "customer-1") is False
    assert lock_session.held == {"customer-1": job.job_id}


@pytest.mark.parametrize(
    "change",
    [
        "stale-dispatch",
        "canceled",
        "cancel-requested",
        "succeeded",
        "already-running",
        "unknown-job",
    ],
)
async def test_start_of_an_unstartable_dispatch_returns_none_and_takes_no_lock(
    db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer, change: str
) -> None:
    [job] = await enqueue("customer-1")
    job_id, pgq_job_id = job.job_id, job.pgq_job_id
    if change == "stale-dispatch":
        pgq_job_id = job.pgq_job_id + 1_000
    elif change == "canceled":
        await db.execute(
            "UPDATE dl_jobs SET status = 'canceled', finished_at = now() WHERE job_id = $1", job_id
        )
    elif change == "cancel-requested":
        await db.execute("UPDATE dl_jobs SET cancel_requested = true WHERE job_id = $1", job_id)
    elif change == "succeeded":
        await db.execute(
            "UPDATE dl_jobs SET status = 'succeeded', attempt = 1, finished_at = now()"
            " WHERE job_id = $1",
            job_id,
        )
    elif change == "already-running":
        await db.execute(
            "UPDATE dl_jobs SET status = 'running', attempt = 1, worker_id = 'elsewhere'"
            " WHERE job_id = $1",
            job_id,
        )
    elif change == "unknown-job":
        job_id = uuid.uuid4()
    before = await job_row(db, job.job_id)

    answer = await lock_session.start(job_id, pgq_job_id)

    assert answer is None
    assert await advisory_locks(db) == 0
    assert await lock_free(db, "customer-1") is True
    assert lock_session.held == {}
    assert dict(await job_row(db, job.job_id)) == dict(before)
    assert await events(db, job.job_id) == [("queued", 0)]


async def test_concurrent_starts_of_one_lock_key_start_exactly_one(
    db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    first, second = await enqueue("shared", "shared")

    answers = await asyncio.gather(
        lock_session.start(first.job_id, first.pgq_job_id),
        lock_session.start(second.job_id, second.pgq_job_id),
    )

    assert all(a is not None for a in answers)
    started = [a for a in answers if a is not None and a.attempt is not None]
    busy = [a for a in answers if a is not None and a.attempt is None]
    assert len(started) == 1
    assert len(busy) == 1
    assert busy[0].lock_busy is True
    assert busy[0].lock_key == "shared"
    winner = started[0].job_id
    loser = busy[0].job_id
    assert {winner, loser} == {first.job_id, second.job_id}
    assert (await job_row(db, winner))["status"] == "running"
    loser_row = await job_row(db, loser)
    assert (loser_row["status"], loser_row["attempt"]) == ("queued", 0)
    assert await events(db, loser) == [("queued", 0)]
    assert lock_session.held == {"shared": winner}
    assert await advisory_locks(db) == 1
    assert await lock_free(db, "shared") is False


async def test_start_of_a_key_this_session_holds_for_another_job_is_lock_busy(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    holder, waiter = await enqueue("shared", "shared")
    await start_ok(lock_session, holder)

    answer = await lock_session.start(waiter.job_id, waiter.pgq_job_id)

    assert answer is not None
    assert answer.attempt is None
    assert answer.lock_busy is True
    assert (await job_row(db, waiter.job_id))["status"] == "queued"
    assert lock_session.held == {"shared": holder.job_id}

    assert await finishes.finish(succeeded(holder), "shared") is True
    # Had the busy start stacked a second session lock, the key would still be taken here.
    await wait_lock_free(db, "shared")
    await start_ok(lock_session, waiter)
    assert lock_session.held == {"shared": waiter.job_id}


async def test_lock_held_by_another_connection_makes_start_lock_busy(
    db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    [job] = await enqueue("taken")
    await db.fetchval("SELECT pg_advisory_lock(hashtextextended('taken', 0))")

    answer = await lock_session.start(job.job_id, job.pgq_job_id)

    assert answer is not None
    assert answer.attempt is None
    assert answer.lock_busy is True
    assert answer.lock_key == "taken"
    row = await job_row(db, job.job_id)
    assert (row["status"], row["attempt"]) == ("queued", 0)
    assert await events(db, job.job_id) == [("queued", 0)]
    assert lock_session.held == {}

    await db.fetchval("SELECT pg_advisory_unlock(hashtextextended('taken', 0))")
    assert (await start_ok(lock_session, job)).attempt == 1


async def test_finish_writes_final_status_and_event_and_frees_the_lock(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    [job] = await enqueue("customer-9")
    await start_ok(lock_session, job)

    owned = await finishes.finish(
        succeeded(job, progress={"processed": 3}, details={"rows": 10}), "customer-9"
    )

    assert owned is True
    row = await job_row(db, job.job_id)
    assert row["status"] == "succeeded"
    assert row["attempt"] == 1
    assert row["finished_at"] is not None
    assert row["lease_expires_at"] is None
    assert row["error"] is None
    assert json.loads(row["progress"]) == {"processed": 3}
    assert await events(db, job.job_id) == [("queued", 0), ("started", 1), ("succeeded", 1)]
    details = await db.fetchval(
        "SELECT details FROM dl_job_events WHERE job_id = $1 AND event = 'succeeded'", job.job_id
    )
    assert json.loads(details) == {"rows": 10, "worker_id": WORKER_ID}
    assert lock_session.held == {}
    await wait_lock_free(db, "customer-9")
    await wait_no_advisory_locks(db)


async def test_finish_with_failed_status_keeps_error(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    [job] = await enqueue("customer-f")
    await start_ok(lock_session, job)

    owned = await finishes.finish(
        FinishRequest(
            job_id=job.job_id,
            attempt=1,
            status=JobStatus.FAILED,
            event=JobEvent.FAILED,
            error="Boom: it broke",
            details={"error": "Boom: it broke"},
        ),
        "customer-f",
    )

    assert owned is True
    row = await job_row(db, job.job_id)
    assert (row["status"], row["error"], row["progress"]) == ("failed", "Boom: it broke", None)
    assert await events(db, job.job_id) == [("queued", 0), ("started", 1), ("failed", 1)]


async def test_finish_returns_only_once_the_lock_is_free(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    """finish() promises "write the final status, then release its lock".

    A caller that awaited it (the runner, then pgqueuer, then the next dispatch of the same
    key on another worker) must find the key free; repeated so an early answer shows up.
    """
    jobs = await enqueue(*(f"seq-{i}" for i in range(100)))
    still_held = []
    for job in jobs:
        await start_ok(lock_session, job)
        assert await finishes.finish(succeeded(job), job.lock_key) is True
        if not await lock_free(db, job.lock_key):
            still_held.append(job.lock_key)

    assert still_held == []


async def test_finish_with_wrong_attempt_writes_nothing_but_frees_the_lock(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    [job] = await enqueue("customer-2")
    await start_ok(lock_session, job)
    before = await job_row(db, job.job_id)

    owned = await finishes.finish(succeeded(job, attempt=2), "customer-2")

    assert owned is False
    assert dict(await job_row(db, job.job_id)) == dict(before)
    assert before["status"] == "running"
    assert await events(db, job.job_id) == [("queued", 0), ("started", 1)]
    assert lock_session.held == {}
    await wait_lock_free(db, "customer-2")


async def test_finish_of_a_job_that_is_no_longer_running_is_fenced(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    [job] = await enqueue("customer-3")
    await start_ok(lock_session, job)
    # The reaper (or a cancel) finished it meanwhile.
    await db.execute(
        "UPDATE dl_jobs SET status = 'lost', finished_at = now() WHERE job_id = $1", job.job_id
    )

    owned = await finishes.finish(succeeded(job), "customer-3")

    assert owned is False
    assert (await job_row(db, job.job_id))["status"] == "lost"
    assert await events(db, job.job_id) == [("queued", 0), ("started", 1)]
    await wait_lock_free(db, "customer-3")


async def test_release_by_a_job_that_is_not_the_holder_keeps_the_lock(
    db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    old, new = await enqueue("shared", "shared")
    await start_ok(lock_session, old)
    lock_session.release("shared", old.job_id)
    await wait_lock_free(db, "shared")
    await start_ok(lock_session, new)

    # A late second release by the old job must not free the new job's lock.
    lock_session.release("shared", old.job_id)
    lock_session.release("shared", uuid.uuid4())
    # Let the session serve a round after those releases, then look.
    [probe] = await enqueue("probe")
    await start_ok(lock_session, probe)

    assert lock_session.held == {"shared": new.job_id, "probe": probe.job_id}
    assert await lock_free(db, "shared") is False

    lock_session.release("shared", new.job_id)
    await wait_lock_free(db, "shared")
    assert lock_session.held == {"probe": probe.job_id}


async def test_close_gives_back_every_lock(
    database_dsn: str, settings: Settings, db: asyncpg.Connection, enqueue: Enqueuer
) -> None:
    session = LockSession(database_dsn, settings.pg_schema_queue, WORKER_ID)
    await session.open()
    try:
        jobs = await enqueue("a", "b", "c")
        for job in jobs:
            await start_ok(session, job)
        assert await advisory_locks(db) == 3
    finally:
        await session.close()

    await wait_no_advisory_locks(db)
    for key in ("a", "b", "c"):
        assert await lock_free(db, key) is True


async def test_many_concurrent_starts_all_start_and_every_lock_is_released_after(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    count = 200
    jobs = await enqueue(*(f"tenant-{i}" for i in range(count)))

    answers = await asyncio.gather(*(lock_session.start(j.job_id, j.pgq_job_id) for j in jobs))

    assert all(a is not None and a.attempt is not None for a in answers)
    assert [a.job_id for a in answers if a is not None] == [j.job_id for j in jobs]
    assert {a.attempt.attempt for a in answers if a is not None and a.attempt} == {1}
    assert len(lock_session.held) == count
    assert await advisory_locks(db) == count
    holders = await db.fetch(
        "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert len(holders) == 1  # one connection holds every lock of the process
    statuses = await db.fetch(
        "SELECT status, count(*) AS n FROM dl_jobs GROUP BY status ORDER BY status"
    )
    assert [(r["status"], r["n"]) for r in statuses] == [("running", count)]

    owned = await asyncio.gather(*(finishes.finish(succeeded(j), j.lock_key) for j in jobs))

    assert owned == [True] * count
    assert lock_session.held == {}
    await wait_no_advisory_locks(db)
    finished = await db.fetchval("SELECT count(*) FROM dl_jobs WHERE status = 'succeeded'")
    assert finished == count
    started_events = await db.fetchval(
        "SELECT count(*) FROM dl_job_events WHERE event IN ('started', 'succeeded')"
    )
    assert started_events == 2 * count


async def test_two_starts_of_the_same_dispatch_start_one_attempt(
    db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    """The same dispatch asked for twice in one round must start one attempt, not two.

    Every request row of the job joins the one `started` row, so both callers are told
    they started attempt 1 (the second with got_lock False) and would both run it.
    """
    [job] = await enqueue("customer-dup")

    answers = await asyncio.gather(
        lock_session.start(job.job_id, job.pgq_job_id),
        lock_session.start(job.job_id, job.pgq_job_id),
    )

    started = [a for a in answers if a is not None and a.attempt is not None]
    assert len(started) == 1, answers
    row = await job_row(db, job.job_id)
    assert (row["status"], row["attempt"]) == ("running", 1)
    assert await events(db, job.job_id) == [("queued", 0), ("started", 1)]


async def postpone(enqueue: Enqueuer, job: Queued) -> int:
    """Replace the job's dispatch as a worker that found its key busy does; the new id."""
    manager = JobManager.from_settings(enqueue.settings, enqueue.sessions)
    postponed = await manager.postpone(
        job.job_id, job.pgq_job_id, delay_sec=0, lock_key=job.lock_key, worker_id="elsewhere"
    )
    assert postponed
    pgq_job_id: int = (await job_row(enqueue.db, job.job_id))["pgq_job_id"]
    assert pgq_job_id != job.pgq_job_id
    return pgq_job_id


@pytest.mark.parametrize("lock", ["free", "busy"])
@pytest.mark.parametrize("order", ["old-first", "current-first"])
async def test_a_replaced_dispatch_in_the_same_round_leaves_the_current_one_its_answer(
    db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer, order: str, lock: str
) -> None:
    """An old dispatch of a job and its current one, started in one round.

    pgqueuer re-picks a picked row whose heartbeat went stale (under load, while the worker
    that picked it was still postponing the job), so a worker can ask for both at once.
    Answering only the first request of the job, as the round once did, gave the current
    dispatch nothing when the old one came first: its entrypoint returned, pgqueuer deleted
    its row, and the queued job was left without a dispatch until the reaper's next pass
    (`redispatched` in tests/e2e/test_fleet.py).
    """
    [job] = await enqueue("replaced")
    current = await postpone(enqueue, job)
    if lock == "busy":
        await db.fetchval("SELECT pg_advisory_lock(hashtextextended('replaced', 0))")
    requests = [job.pgq_job_id, current] if order == "old-first" else [current, job.pgq_job_id]

    answers = await asyncio.gather(*(lock_session.start(job.job_id, pgq) for pgq in requests))

    by_dispatch = dict(zip(requests, answers, strict=True))
    assert by_dispatch[job.pgq_job_id] is None, answers
    answer = by_dispatch[current]
    assert answer is not None, answers
    row = await job_row(db, job.job_id)
    if lock == "busy":
        # The runner postpones the job under `current`: its dispatch is replaced, not lost.
        assert answer.lock_busy, answer
        assert answer.attempt is None, answer
        assert (row["status"], row["pgq_job_id"]) == ("queued", current)
        assert lock_session.held == {}
        assert await events(db, job.job_id) == [("queued", 0), ("lock_busy", 0)]
    else:
        assert answer.attempt is not None, answer
        assert answer.attempt.attempt == 1
        assert (row["status"], row["attempt"]) == ("running", 1)
        assert lock_session.held == {"replaced": job.job_id}
        assert await events(db, job.job_id) == [("queued", 0), ("lock_busy", 0), ("started", 1)]


async def kill_lock_session_backend(db: asyncpg.Connection) -> None:
    """Terminate the lock session's server process, as a network cut or restart would."""
    killed = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name LIKE 'dataloader lock session %'"
        " AND datname = current_database()"
    )
    assert killed == 1


async def test_lost_connection_stops_its_jobs_and_takes_their_locks_back(
    db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    """The locks died with the session: their jobs must stop, however the reconnect goes.

    Until they have stopped, the new session holds their locks again, so that nobody else
    starts a job of those lock_keys while they wind down.
    """
    stopped: list[uuid.UUID] = []
    lock_session.on_locks_lost = stopped.extend
    running, later = await enqueue("kept", "after-restart")
    await start_ok(lock_session, running)

    await kill_lock_session_backend(db)  # the server drops the lock with the session
    await wait_until(lambda: stopped, timeout=WAIT_SEC, what="the job to be stopped")
    await start_ok(lock_session, later)  # the next round reconnects first

    assert stopped == [running.job_id]
    assert await lock_free(db, "kept") is False  # taken again by the new session
    assert lock_session.held == {"kept": running.job_id, "after-restart": later.job_id}


async def test_a_lock_taken_by_someone_else_while_disconnected_stops_its_job(
    database_dsn: str, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    stopped: list[uuid.UUID] = []
    lock_session.on_locks_lost = stopped.extend
    running, later = await enqueue("stolen", "after-restart")
    await start_ok(lock_session, running)

    thief = await asyncpg.connect(database_dsn)
    try:
        # Queued behind the session's lock, the thief gets it the moment the session dies,
        # before the session can reconnect and take it back.
        stealing = asyncio.create_task(
            thief.fetchval("SELECT pg_advisory_lock(hashtextextended('stolen', 0))")
        )
        await wait_until(
            lambda: _waiting_for_a_lock(db), timeout=WAIT_SEC, what="the thief to queue"
        )
        await kill_lock_session_backend(db)
        await asyncio.wait_for(stealing, WAIT_SEC)
        await start_ok(lock_session, later)

        # Stopped when the session ended, and again when its lock turned out to be taken.
        assert set(stopped) == {running.job_id}
        assert lock_session.held == {"after-restart": later.job_id}
    finally:
        await thief.close()


async def _waiting_for_a_lock(db: asyncpg.Connection) -> bool:
    waiting: int = await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    )
    return waiting > 0


async def test_finish_writer_reconnects_when_its_connection_was_killed(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    first, second = await enqueue("fw-1", "fw-2")
    await start_ok(lock_session, first)
    await start_ok(lock_session, second)
    assert await finishes.finish(succeeded(first), "fw-1") is True

    killed = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name LIKE 'dataloader finish writer %'"
        " AND datname = current_database()"
    )
    assert killed == 1

    assert await finishes.finish(succeeded(second), "fw-2") is True
    assert (await job_row(db, second.job_id))["status"] == "succeeded"
    assert await lock_free(db, "fw-2") is True


# --- concurrency groups: N slots per concurrency_key, held like lock_key locks ---------------


async def slot_free(db: asyncpg.Connection, slot: str) -> bool:
    """Whether another connection can take a group slot now (given back at once)."""
    got = bool(await db.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 1))", slot))
    if got:
        await db.fetchval("SELECT pg_advisory_unlock(hashtextextended($1, 1))", slot)
    return got


async def test_starts_of_one_group_take_distinct_slots_up_to_its_limit(
    finishes: FinishWriter, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    jobs = await enqueue("a", "b", "c", "d", "e", concurrency_key="g", concurrency_limit=2)

    # One round for all five: members of one group in one statement must not share a slot.
    answers = await asyncio.gather(*(lock_session.start(j.job_id, j.pgq_job_id) for j in jobs))

    started = [j for j, a in zip(jobs, answers, strict=True) if a and a.attempt is not None]
    waiting = [j for j, a in zip(jobs, answers, strict=True) if a and a.group_full]
    assert (len(started), len(waiting)) == (2, 3), answers
    assert lock_session.held_slots == {"0:g": started[0].job_id, "1:g": started[1].job_id} or (
        lock_session.held_slots == {"0:g": started[1].job_id, "1:g": started[0].job_id}
    )
    for job in waiting:
        row = await job_row(db, job.job_id)
        assert (row["status"], row["attempt"]) == ("queued", 0)
        await wait_lock_free(db, job.lock_key)  # its lock_key lock went back

    # Later rounds: the slots this session holds are never taken a second time.
    again = [await lock_session.start(j.job_id, j.pgq_job_id) for j in waiting]
    assert [a is not None and a.group_full for a in again] == [True, True, True]
    assert (await slot_free(db, "0:g"), await slot_free(db, "1:g")) == (False, False)

    # The slot goes back with the lock_key lock, after the final write.
    [freed] = [
        slot for slot, job_id in lock_session.held_slots.items() if job_id == started[0].job_id
    ]
    assert await finishes.finish(succeeded(started[0]), started[0].lock_key) is True
    assert len(lock_session.held_slots) == 1
    assert await wait_until(lambda: slot_free(db, freed), timeout=WAIT_SEC, what="slot freed")
    await start_ok(lock_session, waiting[0])
    assert sorted(lock_session.held_slots) == ["0:g", "1:g"]


async def test_a_slot_taken_by_someone_else_while_disconnected_stops_its_job(
    database_dsn: str, db: asyncpg.Connection, lock_session: LockSession, enqueue: Enqueuer
) -> None:
    stopped: list[uuid.UUID] = []
    lock_session.on_locks_lost = stopped.extend
    [running] = await enqueue("own-key", concurrency_key="solo", concurrency_limit=1)
    [later] = await enqueue("after-restart")
    await start_ok(lock_session, running)
    assert lock_session.held_slots == {"0:solo": running.job_id}

    thief = await asyncpg.connect(database_dsn)
    try:
        stealing = asyncio.create_task(
            thief.fetchval("SELECT pg_advisory_lock(hashtextextended('0:solo', 1))")
        )
        await wait_until(
            lambda: _waiting_for_a_lock(db), timeout=WAIT_SEC, what="the thief to queue"
        )
        await kill_lock_session_backend(db)
        await asyncio.wait_for(stealing, WAIT_SEC)
        await start_ok(lock_session, later)  # the next round reconnects first

        assert set(stopped) == {running.job_id}
        assert lock_session.held_slots == {}  # the thief's now: never given back by us
    finally:
        await thief.close()
