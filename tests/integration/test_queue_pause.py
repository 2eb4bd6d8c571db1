"""Pausing a queue: parked dispatches, every dispatch path, the start race, and resume."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from pgqueuer.ports.repository import EntrypointExecutionParameter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.jobs import dispatch as dispatch_in_session  # one new dispatch for one job
from app.db.pgqueuer_schema import pgqueuer_settings, queries_for
from app.db.pgqueuer_tables import DISPATCH_CHANNEL, parked_entrypoint
from app.domain.attempts import RequeueRequest
from app.domain.spec import JobCreate
from app.domain.states import JobEvent
from app.jobs.enqueue import enqueue_many_in_session
from app.jobs.manager import JobManager
from app.jobs.queue_service import QueueService
from app.jobs.service import JobService
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.waiting import wait_until
from worker.lock_session import LockSession
from worker.maintenance.reaper import Reaper

load_pipelines()  # the built-in `noop`

QUEUE = "etl.paused"
OTHER = "etl.other"
PARKED = parked_entrypoint(QUEUE)
WORKER_ID = "pause-test"
WAIT_SEC = 10.0


@pytest.fixture
def queues(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> QueueService:
    return QueueService(sessions, settings)


@pytest.fixture
async def lock_session(database_dsn: str, settings: Settings) -> AsyncIterator[LockSession]:
    session = LockSession(database_dsn, settings.pg_schema_queue, WORKER_ID)
    await session.open()
    yield session
    await session.close()


async def enqueue(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queue: str,
    *lock_keys: str,
    **overrides: object,
) -> list[uuid.UUID]:
    """Commit one queued noop job per lock key on `queue`; their ids in order."""
    specs = [
        JobCreate(queue=queue, task="noop", lock_key=key, **overrides)  # type: ignore[arg-type]
        for key in lock_keys
    ]
    async with sessions() as session, session.begin():
        results = await enqueue_many_in_session(session, specs, settings)
    return [r.job_id for r in results]


async def dispatch(db: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record:
    """The job's current pgqueuer row, with its job's available_at and the clock."""
    row: asyncpg.Record = await db.fetchrow(
        "SELECT q.id, q.status::text AS status, q.entrypoint, q.execute_after, j.available_at,"
        " now() AS db_now FROM dl_jobs j JOIN pgqueuer q ON q.id = j.pgq_job_id"
        " WHERE j.job_id = $1",
        job_id,
    )
    assert row is not None, f"job {job_id} has no dispatch"
    return row


async def parked(db: asyncpg.Connection, job_id: uuid.UUID) -> bool:
    """Whether the job's dispatch is out of every worker's sight (and still queued)."""
    row = await dispatch(db, job_id)
    return bool(row["entrypoint"] == parked_entrypoint(QUEUE) and row["status"] == "queued")


async def runnable_now(db: asyncpg.Connection, job_id: uuid.UUID) -> bool:
    """Whether the job's own queue's workers may pick its dispatch now."""
    row = await dispatch(db, job_id)
    served = not row["entrypoint"].startswith("paused/")
    return bool(served and row["execute_after"] <= row["db_now"])


async def test_pause_parks_queued_dispatches_of_that_queue_only(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    paused_jobs = await enqueue(sessions, settings, QUEUE, "a", "b")
    [other] = await enqueue(sessions, settings, OTHER, "c")

    view = await queues.pause(QUEUE)

    assert view.paused is True
    assert view.paused_at is not None
    assert view.queued == 2
    for job_id in paused_jobs:
        assert await parked(db, job_id)
        assert (await dispatch(db, job_id))["status"] == "queued"
    assert await runnable_now(db, other)
    row = await db.fetchrow("SELECT paused, paused_at FROM dl_queues WHERE queue = $1", QUEUE)
    assert row["paused"] is True


async def test_pgqueuer_dequeue_sees_no_dispatch_of_a_paused_queue(
    database_dsn: str,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    """Not picked, not read: the dequeue's index range for the queue is empty."""
    jobs = await enqueue(sessions, settings, QUEUE, "d1", "d2", "d3")
    await queues.pause(QUEUE)
    connection = await asyncpg.connect(database_dsn)
    try:
        pgq = queries_for(connection, pgqueuer_settings(settings.pg_schema_queue))

        async def dequeue() -> list[uuid.UUID]:
            picked = await pgq.dequeue(
                batch_size=10,
                entrypoints={QUEUE: EntrypointExecutionParameter(concurrency_limit=0)},
                queue_manager_id=uuid.uuid4(),
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=30),
            )
            return [uuid.UUID(bytes=job.payload or b"") for job in picked]

        assert await dequeue() == []
        assert await pgq.queued_work([QUEUE]) == 0
        await queues.resume(QUEUE)
        assert sorted(await dequeue()) == sorted(jobs)
    finally:
        await connection.close()


async def test_pause_twice_keeps_the_first_paused_at(queues: QueueService) -> None:
    first = await queues.pause(QUEUE)
    second = await queues.pause(QUEUE)
    assert second.paused is True
    assert second.paused_at == first.paused_at


async def test_resume_gives_dispatches_their_available_at_back(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    [due] = await enqueue(sessions, settings, QUEUE, "due")
    later_at = await db.fetchval("SELECT now() + interval '1 hour'")
    [later] = await enqueue(sessions, settings, QUEUE, "later", available_at=later_at)
    await queues.pause(QUEUE)
    assert await parked(db, due)
    assert await parked(db, later)

    view = await queues.resume(QUEUE)

    assert view.paused is False
    assert view.paused_at is None
    assert await runnable_now(db, due)
    row = await dispatch(db, later)
    assert row["execute_after"] == row["available_at"] == later_at
    assert (await db.fetchval("SELECT paused FROM dl_queues WHERE queue = $1", QUEUE)) is False


async def test_resume_of_a_queue_never_paused_is_harmless(queues: QueueService) -> None:
    view = await queues.resume("never.paused")
    assert view.paused is False
    assert view.queued == 0


async def test_resume_releases_a_parked_row_that_dispatches_no_queued_job(
    db: asyncpg.Connection, queues: QueueService
) -> None:
    await queues.pause(QUEUE)
    orphan = await db.fetchval(
        "INSERT INTO pgqueuer (priority, entrypoint, payload, status)"
        " VALUES (0, $1, $2, 'queued') RETURNING id",
        PARKED,
        uuid.uuid4().bytes,
    )

    await queues.resume(QUEUE)

    # pgqueuer picks it, the start finds nothing to start, and pgqueuer clears the row.
    assert await db.fetchval("SELECT entrypoint FROM pgqueuer WHERE id = $1", orphan) == QUEUE


async def test_enqueue_into_a_paused_queue_is_parked(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    await queues.pause(QUEUE)

    jobs = await enqueue(sessions, settings, QUEUE, "x", "y")
    [other] = await enqueue(sessions, settings, OTHER, "z")

    assert all([await parked(db, job_id) for job_id in jobs])
    assert await runnable_now(db, other)
    assert await db.fetchval(
        "SELECT count(*) FROM pgqueuer_log WHERE status = 'queued' AND job_id = ANY($1)",
        [(await dispatch(db, j))["id"] for j in jobs],
    ) == len(jobs), "logged as queued, as pgqueuer's own enqueue does"
    await queues.resume(QUEUE)
    assert all([await runnable_now(db, job_id) for job_id in jobs])


async def test_new_dispatch_of_a_paused_queue_is_parked(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    """Every re-dispatch (retry, lock busy, shutdown, reaper) goes through this."""
    await queues.pause(QUEUE)
    job_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        parked_id = await dispatch_in_session(
            session,
            settings.pg_schema_queue,
            queue=QUEUE,
            job_id=job_id,
            priority=5,
            delay=timedelta(seconds=3),
        )
        running_id = await dispatch_in_session(
            session,
            settings.pg_schema_queue,
            queue=OTHER,
            job_id=job_id,
            priority=5,
            delay=timedelta(seconds=3),
        )
    rows = {
        r["id"]: r
        for r in await db.fetch(
            "SELECT id, priority, entrypoint, payload, execute_after - now() AS delay,"
            " execute_after FROM pgqueuer"
        )
    }
    assert rows[parked_id]["entrypoint"] == PARKED
    assert rows[running_id]["entrypoint"] == OTHER
    for row in rows.values():
        assert row["priority"] == -5
        assert row["payload"] == job_id.bytes
        assert timedelta(seconds=2) < row["delay"] <= timedelta(seconds=3)
    logged = await db.fetchval(
        "SELECT count(*) FROM pgqueuer_log WHERE status = 'queued' AND job_id = ANY($1)",
        [parked_id, running_id],
    )
    assert logged == 2


async def test_retry_of_a_running_job_in_a_paused_queue_is_parked(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
    lock_session: LockSession,
) -> None:
    [job_id] = await enqueue(sessions, settings, QUEUE, "retry")
    answer = await lock_session.start(job_id, (await dispatch(db, job_id))["id"])
    assert answer is not None
    assert answer.attempt is not None
    await queues.pause(QUEUE)

    manager = JobManager.from_settings(settings, sessions)
    assert await manager.requeue(
        RequeueRequest(job_id, 1, JobEvent.RETRY_SCHEDULED, delay_sec=0, count_attempt=True)
    )
    lock_session.release(answer.lock_key, job_id)

    assert await parked(db, job_id)
    await queues.resume(QUEUE)
    assert await runnable_now(db, job_id)


async def test_reaper_redispatch_in_a_paused_queue_is_parked(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    [job_id] = await enqueue(sessions, settings, QUEUE, "lost-dispatch")
    await queues.pause(QUEUE)
    await db.execute("DELETE FROM pgqueuer")  # the dispatch is lost

    result = await Reaper(JobManager.from_settings(settings, sessions)).run_once()

    assert result.redispatched == 1
    assert await parked(db, job_id)
    reaper = Reaper(JobManager.from_settings(settings, sessions))
    assert (await reaper.run_once()).redispatched == 0


async def test_resume_waits_for_an_enqueue_that_saw_the_queue_paused(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    """Its dispatch is parked but not yet committed: the resume must not miss it."""
    await queues.pause(QUEUE)
    producer = sessions()
    await producer.begin()
    try:
        [result] = await enqueue_many_in_session(
            producer, [JobCreate(queue=QUEUE, task="noop", lock_key="late")], settings
        )
        resume = asyncio.create_task(queues.resume(QUEUE))

        async def resume_blocked() -> bool:
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
            return bool(waiting)

        assert await wait_until(resume_blocked, timeout=WAIT_SEC, what="resume to wait")
        assert not resume.done()
        await producer.commit()
    finally:
        await producer.close()

    await asyncio.wait_for(resume, WAIT_SEC)
    assert await runnable_now(db, result.job_id)


async def test_resume_notifies_waiting_workers(
    database_dsn: str,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    """pgqueuer's trigger does not notify on UPDATE; the resume must, or workers sleep on.

    It sends the dispatch notice a new job's statement sends (app.jobs.wake_gate reads it).
    """
    await enqueue(sessions, settings, QUEUE, "wake")
    await queues.pause(QUEUE)
    listener = await asyncpg.connect(database_dsn)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(DISPATCH_CHANNEL, lambda *args: received.put_nowait(args[-1]))

        await queues.resume(QUEUE)

        payload = await asyncio.wait_for(received.get(), WAIT_SEC)
    finally:
        await listener.close()
    notice = json.loads(payload)
    assert (notice["kind"], notice["queues"], notice["due"]) == ("dispatch", {QUEUE: 1}, {QUEUE: 1})


async def test_start_of_a_job_whose_queue_was_paused_after_the_pick_is_answered_paused(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    lock_session: LockSession,
) -> None:
    [job_id] = await enqueue(sessions, settings, QUEUE, "raced")
    pgq_job_id = (await dispatch(db, job_id))["id"]
    # The pause commits between pgqueuer's pick and the worker's start statement.
    await db.execute("INSERT INTO dl_queues (queue, paused) VALUES ($1, true)", QUEUE)

    answer = await lock_session.start(job_id, pgq_job_id)

    assert answer is not None
    assert answer.paused is True
    assert answer.attempt is None
    assert answer.got_lock is False
    assert answer.lock_busy is False
    assert lock_session.held == {}
    assert await db.fetchval("SELECT pg_try_advisory_lock(hashtextextended('raced', 0))"), (
        "no lock was taken"
    )
    row = await db.fetchrow("SELECT status, attempt FROM dl_jobs WHERE job_id = $1", job_id)
    assert (row["status"], row["attempt"]) == ("queued", 0)


async def test_start_batch_skips_paused_jobs_and_lets_a_sharer_of_the_key_start(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    lock_session: LockSession,
) -> None:
    [paused_job] = await enqueue(sessions, settings, QUEUE, "shared")
    [free_job] = await enqueue(sessions, settings, OTHER, "shared")
    await db.execute("INSERT INTO dl_queues (queue, paused) VALUES ($1, true)", QUEUE)
    paused_pgq = (await dispatch(db, paused_job))["id"]
    free_pgq = (await dispatch(db, free_job))["id"]

    # One round: the paused job asked first, then the other job with the same key.
    paused_answer, free_answer = await asyncio.gather(
        lock_session.start(paused_job, paused_pgq), lock_session.start(free_job, free_pgq)
    )

    assert paused_answer is not None
    assert paused_answer.paused
    assert free_answer is not None
    assert free_answer.attempt is not None
    assert lock_session.held == {"shared": free_job}


async def test_postpone_of_a_paused_job_parks_it_without_counting_an_attempt(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    """The runner's answer to `paused`: a new parked dispatch and a queue_paused event."""
    [job_id] = await enqueue(sessions, settings, QUEUE, "parked")
    old_pgq = (await dispatch(db, job_id))["id"]
    await queues.pause(QUEUE)

    manager = JobManager.from_settings(settings, sessions)
    assert await manager.park(job_id, old_pgq, worker_id=WORKER_ID)

    row = await dispatch(db, job_id)
    assert row["id"] != old_pgq
    assert row["entrypoint"] == PARKED
    job = await db.fetchrow("SELECT status, attempt FROM dl_jobs WHERE job_id = $1", job_id)
    assert (job["status"], job["attempt"]) == ("queued", 0)
    event = await db.fetchrow(
        "SELECT event, attempt, details FROM dl_job_events WHERE job_id = $1"
        " ORDER BY id DESC LIMIT 1",
        job_id,
    )
    assert event["event"] == "queue_paused"
    assert json.loads(event["details"]) == {"queue": QUEUE, "worker_id": WORKER_ID}
    await queues.resume(QUEUE)
    assert await runnable_now(db, job_id)


async def test_cancel_of_a_paused_job_withdraws_its_parked_dispatch(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    queues: QueueService,
) -> None:
    [job_id] = await enqueue(sessions, settings, QUEUE, "cancel-me")
    await queues.pause(QUEUE)
    service = JobService(sessions, settings)
    try:
        view = await service.cancel(job_id)
    finally:
        await service.close()
    assert view.status == "canceled"
    assert await db.fetchval("SELECT count(*) FROM pgqueuer") == 0
