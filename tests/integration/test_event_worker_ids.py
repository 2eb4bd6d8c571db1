"""Every event a worker writes names it: runner transitions, and the reaper's with its leader."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_many_in_session
from app.jobs.manager import JobManager
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.waiting import wait_until
from worker.finish_writer import FinishWriter
from worker.lock_session import LockSession
from worker.maintenance.reaper import Reaper
from worker.runner import Runner

load_pipelines()  # the built-in `noop`, as a worker would have it

RUNNER_ID = "runner-1"
WAIT_SEC = 10.0


@pytest.fixture
async def lock_session(database_dsn: str, settings: Settings) -> AsyncIterator[LockSession]:
    """The runner's lock session, named RUNNER_ID."""
    session = LockSession(database_dsn, settings.pg_schema_queue, RUNNER_ID)
    await session.open()
    yield session
    await session.close()


@pytest.fixture
async def runner(
    database_dsn: str,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    lock_session: LockSession,
) -> AsyncIterator[Runner]:
    """A worker's attempt runner, without pgqueuer: tests hand it dispatches directly."""
    finishes = FinishWriter(database_dsn, lock_session)
    await finishes.open()
    manager = JobManager.from_settings(settings, sessions)
    yield Runner(settings, manager, lock_session, finishes, RUNNER_ID)
    await finishes.close()


async def _enqueue(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    db: asyncpg.Connection,
    args: dict[str, Any],
    **spec: Any,
) -> tuple[uuid.UUID, int]:
    """Commit one queued noop job; its id and current dispatch."""
    job_spec = JobCreate(
        queue="etl.ids", task="noop", lock_key=f"key-{uuid.uuid4().hex[:8]}", args=args, **spec
    )
    async with sessions() as session, session.begin():
        [result] = await enqueue_many_in_session(session, [job_spec], settings)
    pgq_job_id = await db.fetchval(
        "SELECT pgq_job_id FROM dl_jobs WHERE job_id = $1", result.job_id
    )
    return result.job_id, int(pgq_job_id)


async def _details(db: asyncpg.Connection, job_id: uuid.UUID, event: str) -> list[dict[str, Any]]:
    """The details of the job's `event` rows, oldest first."""
    rows = await db.fetch(
        "SELECT details FROM dl_job_events WHERE job_id = $1 AND event = $2 ORDER BY id",
        job_id,
        event,
    )
    return [json.loads(row["details"]) if row["details"] else {} for row in rows]


async def test_runner_final_events_name_the_worker(
    runner: Runner,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    ok, ok_dispatch = await _enqueue(sessions, settings, db, {"steps": 1, "sleep": 0})
    bad, bad_dispatch = await _enqueue(
        sessions, settings, db, {"steps": 1, "fail": True}, max_attempts=1
    )

    await runner.run_dispatch(ok, ok_dispatch, None)
    await runner.run_dispatch(bad, bad_dispatch, None)

    assert await _details(db, ok, "started") == [{"worker_id": RUNNER_ID}]
    assert await _details(db, ok, "succeeded") == [{"worker_id": RUNNER_ID}]
    [failed] = await _details(db, bad, "failed")
    assert failed["worker_id"] == RUNNER_ID
    assert failed["error"] == "NoopFailure: noop failed on purpose at step 0"


async def test_runner_interrupted_event_names_the_worker(
    runner: Runner,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    job_id, dispatch = await _enqueue(sessions, settings, db, {"steps": 200, "sleep": 0.05})
    attempt = asyncio.create_task(runner.run_dispatch(job_id, dispatch, None))

    async def running() -> bool:
        return bool(job_id in runner.active)

    started: bool = await wait_until(running, timeout=WAIT_SEC, what="the attempt to run")
    assert started
    runner.interrupt_all()
    await asyncio.wait_for(attempt, WAIT_SEC)

    assert await db.fetchval("SELECT status FROM dl_jobs WHERE job_id = $1", job_id) == "queued"
    assert await _details(db, job_id, "interrupted") == [{"worker_id": RUNNER_ID}]


async def test_runner_lock_busy_event_names_the_worker(
    runner: Runner,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    job_id, dispatch = await _enqueue(sessions, settings, db, {"steps": 1, "sleep": 0})
    lock_key = await db.fetchval("SELECT lock_key FROM dl_jobs WHERE job_id = $1", job_id)
    await db.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", lock_key)

    await runner.run_dispatch(job_id, dispatch, None)

    assert await _details(db, job_id, "lock_busy") == [
        {
            "lock_key": lock_key,
            "retry_in_sec": settings.dl_claim_backoff_sec,
            "worker_id": RUNNER_ID,
        }
    ]


async def test_reaper_events_name_the_attempts_worker_and_the_leader(
    database_dsn: str,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    db: asyncpg.Connection,
) -> None:
    retried, retried_dispatch = await _enqueue(sessions, settings, db, {"steps": 1}, max_attempts=2)
    lost, lost_dispatch = await _enqueue(sessions, settings, db, {"steps": 1}, max_attempts=1)
    # A worker named "dead" starts two jobs, then vanishes with their leases running out.
    dead = LockSession(database_dsn, settings.pg_schema_queue, "dead")
    await dead.open()
    for job_id, dispatch in ((retried, retried_dispatch), (lost, lost_dispatch)):
        answer = await dead.start(job_id, dispatch)
        assert answer is not None
        assert answer.attempt is not None
    await dead.close()
    await db.execute(
        "UPDATE dl_jobs SET lease_expires_at = now() - interval '1 second'"
        " WHERE job_id = ANY($1::uuid[])",
        [retried, lost],
    )
    # A queued job whose dispatch vanished.
    orphan, orphan_dispatch = await _enqueue(sessions, settings, db, {"steps": 1})
    await db.execute("DELETE FROM pgqueuer WHERE id = $1", orphan_dispatch)

    reaper = Reaper(JobManager.from_settings(settings, sessions), worker_id="leader")
    result = await reaper.run_once()

    assert (result.requeued, result.lost, result.redispatched) == (1, 1, 1)
    reaped = {"worker_id": "dead", "reaped_by": "leader"}
    assert await _details(db, retried, "lease_expired") == [reaped]
    assert await _details(db, lost, "lost") == [reaped]
    assert await _details(db, orphan, "redispatched") == [{"reaped_by": "leader"}]
