"""JobService.retry and list_jobs against a real database: fencing, races and listing plans."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import jobs as job_rows
from app.domain.attempts import FinishRequest
from app.domain.errors import JobNotRetryableError
from app.domain.filters import JobFilter
from app.domain.spec import JobCreate
from app.domain.states import JobEvent, JobStatus
from app.jobs.manager import JobManager
from app.jobs.service import JobService
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.attempts import start_attempt

load_pipelines()  # the built-in `noop`


async def new_job(service: JobService, **spec: Any) -> uuid.UUID:
    [result] = await service.trigger_many(
        [JobCreate(queue="etl.default", task="noop", lock_key=f"k-{uuid.uuid4().hex}", **spec)]
    )
    return result.job_id


async def start(db: asyncpg.Connection, settings: Settings, job_id: uuid.UUID) -> int:
    """Start the job's current dispatch as a worker's lock session does; returns the attempt."""
    return await start_attempt(db, JobManager(settings.pg_schema_queue), job_id, "worker-b")


async def test_retry_stale_runner_of_the_old_attempt_is_fenced_out(
    service: JobService,
    sessions: async_sessionmaker[AsyncSession],
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    job_id = await new_job(service, max_attempts=2)
    await db.execute("UPDATE dl_jobs SET attempt = 1 WHERE job_id = $1", job_id)
    assert await start(db, settings, job_id) == 2  # the stale runner's attempt
    async with sessions() as session, session.begin():  # the reaper: lease gone, last attempt
        assert await job_rows.finish_attempt(
            session, job_id, 2, JobStatus.LOST, JobEvent.LOST, error="lease expired"
        )

    view = await service.retry(job_id)
    assert (view.attempt, view.max_attempts) == (2, 4)
    assert await start(db, settings, job_id) == 3  # the new runner

    # The stale runner of attempt 2 wakes up.
    manager = JobManager(settings.pg_schema_queue, sessions)
    assert await manager.heartbeat(job_id, 2, {"processed": 9}) is None
    assert not await manager.finish_many(
        db, [FinishRequest(job_id, 2, JobStatus.SUCCEEDED, JobEvent.SUCCEEDED)], "worker-a"
    )
    row = await db.fetchrow(
        "SELECT status, attempt, progress FROM dl_jobs WHERE job_id = $1", job_id
    )
    assert (row["status"], row["attempt"], row["progress"]) == ("running", 3, None)


async def test_retry_concurrent_calls_one_wins(service: JobService, db: asyncpg.Connection) -> None:
    job_id = await new_job(service)
    await db.execute(
        "UPDATE dl_jobs SET status = 'failed', attempt = 5, finished_at = now() WHERE job_id = $1",
        job_id,
    )

    results = await asyncio.gather(
        *(service.retry(job_id) for _ in range(8)), return_exceptions=True
    )

    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(e, JobNotRetryableError) and e.status == "queued" for e in losses)
    assert (wins[0].attempt, wins[0].max_attempts) == (5, 10)
    retried = await db.fetchval(
        "SELECT count(*) FROM dl_job_events WHERE job_id = $1 AND event = 'retried'", job_id
    )
    assert retried == 1


async def test_list_jobs_final_statuses_rely_on_finished_at(
    service: JobService, db: asyncpg.Connection
) -> None:
    """Every path to a final status sets finished_at; the listing's implied filter needs it."""
    queued = await new_job(service)
    canceled = await new_job(service)
    await service.cancel(canceled)
    failed = await new_job(service)
    await db.execute(
        "UPDATE dl_jobs SET status = 'failed', attempt = 1, finished_at = now() WHERE job_id = $1",
        failed,
    )
    await service.retry(failed)

    final = await service.list_jobs(JobFilter.from_query(status="canceled,failed,lost"))
    live = await service.list_jobs(JobFilter.from_query(status="queued"))

    assert [job.job_id for job in final.jobs] == [canceled]
    assert {job.job_id for job in live.jobs} == {queued, failed}
