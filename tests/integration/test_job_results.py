"""Stored results against a real database: the fenced write, listings, the accessor by id."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.jobs import READ_CHUNK, list_jobs_statement
from app.domain.attempts import FinishRequest
from app.domain.filters import JobFilter
from app.domain.spec import JobCreate
from app.domain.states import JobEvent, JobStatus
from app.jobs.manager import JobManager
from app.jobs.results import JobResults
from app.jobs.service import JobService
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.attempts import start_attempt

load_pipelines()  # the built-in `noop`

WORKER_ID = "results-test"


async def new_job(service: JobService, **spec: Any) -> uuid.UUID:
    [created] = await service.trigger_many(
        [JobCreate(queue="etl.results", task="noop", lock_key=f"r-{uuid.uuid4().hex}", **spec)]
    )
    return created.job_id


async def start(db: asyncpg.Connection, manager: JobManager, job_id: uuid.UUID) -> int:
    """Start the job's current dispatch as a worker's lock session does; its attempt."""
    return await start_attempt(db, manager, job_id, WORKER_ID)


def succeeded(job_id: uuid.UUID, attempt: int, result: Any) -> FinishRequest:
    return FinishRequest(
        job_id,
        attempt,
        JobStatus.SUCCEEDED,
        JobEvent.SUCCEEDED,
        result_json=None if result is None else json.dumps(result),
    )


async def stored_result(db: asyncpg.Connection, job_id: uuid.UUID) -> Any:
    text = await db.fetchval("SELECT result FROM dl_jobs WHERE job_id = $1", job_id)
    return None if text is None else json.loads(text)


@pytest.fixture
def manager(settings: Settings) -> JobManager:
    return JobManager(settings.pg_schema_queue)


async def test_finish_writes_the_result_with_succeeded(
    service: JobService, manager: JobManager, db: asyncpg.Connection
) -> None:
    job_id = await new_job(service)
    attempt = await start(db, manager, job_id)

    written = await manager.finish_many(
        db, [succeeded(job_id, attempt, {"rows": 42, "file": "rates.csv"})], WORKER_ID
    )

    assert written == {job_id}
    assert await stored_result(db, job_id) == {"rows": 42, "file": "rates.csv"}
    view = await service.status(job_id)
    assert (view.status, view.result) == ("succeeded", {"rows": 42, "file": "rates.csv"})


async def test_finish_of_many_jobs_writes_each_its_own_result(
    service: JobService, manager: JobManager, db: asyncpg.Connection
) -> None:
    """One statement finishes a round: results must not cross between its rows."""
    job_ids = [await new_job(service) for _ in range(3)]
    attempts = [await start(db, manager, job_id) for job_id in job_ids]
    results: list[Any] = [{"n": 0}, None, ["n", 2]]

    requests = [
        succeeded(job_id, attempt, result)
        for job_id, attempt, result in zip(job_ids, attempts, results, strict=True)
    ]
    assert await manager.finish_many(db, requests, WORKER_ID) == set(job_ids)

    assert [await stored_result(db, job_id) for job_id in job_ids] == results


async def test_stale_attempt_result_is_not_written(
    service: JobService,
    manager: JobManager,
    sessions: async_sessionmaker[AsyncSession],
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    """Attempt 1 lost its lease and attempt 2 runs: attempt 1's result is refused with its
    status; attempt 2's is the one stored."""
    job_id = await new_job(service, max_attempts=3)
    assert await start(db, manager, job_id) == 1
    pooled = JobManager(settings.pg_schema_queue, sessions)
    await db.execute(
        "UPDATE dl_jobs SET lease_expires_at = now() - interval '1 second' WHERE job_id = $1",
        job_id,
    )
    assert (await pooled.rescue(batch_size=10)).requeued == 1
    assert await start(db, manager, job_id) == 2

    stale = await manager.finish_many(db, [succeeded(job_id, 1, {"from": 1})], WORKER_ID)

    assert stale == set()
    row = await db.fetchrow("SELECT status, attempt, result FROM dl_jobs WHERE job_id = $1", job_id)
    assert (row["status"], row["attempt"], row["result"]) == ("running", 2, None)

    assert await manager.finish_many(db, [succeeded(job_id, 2, {"from": 2})], WORKER_ID)
    assert await stored_result(db, job_id) == {"from": 2}
    again = await manager.finish_many(db, [succeeded(job_id, 1, {"from": 1})], WORKER_ID)
    assert again == set()
    assert await stored_result(db, job_id) == {"from": 2}


async def test_retry_clears_a_result_the_failed_job_carried(
    service: JobService, manager: JobManager, db: asyncpg.Connection
) -> None:
    """Only a succeeding attempt writes a result; a retried job starts without one even if
    its row held a result (written by hand, or by an older version)."""
    job_id = await new_job(service, max_attempts=1)
    attempt = await start(db, manager, job_id)
    failed = FinishRequest(job_id, attempt, JobStatus.FAILED, JobEvent.FAILED, error="boom")
    assert await manager.finish_many(db, [failed], WORKER_ID)
    await db.execute("UPDATE dl_jobs SET result = '{\"partial\": 1}' WHERE job_id = $1", job_id)

    view = await service.retry(job_id)

    assert (view.status, view.result) == ("queued", None)
    assert await stored_result(db, job_id) is None


async def test_list_jobs_leaves_results_out_unless_asked(
    service: JobService, manager: JobManager, db: asyncpg.Connection
) -> None:
    job_id = await new_job(service, partition_key="listing-results")
    attempt = await start(db, manager, job_id)
    await manager.finish_many(db, [succeeded(job_id, attempt, {"big": "x" * 10})], WORKER_ID)
    filters = JobFilter(partition_key="listing-results")

    plain = await service.list_jobs(filters)
    asked = await service.list_jobs(filters, with_result=True)

    assert "result" not in json.loads(msgspec.json.encode(plain))["jobs"][0]
    assert json.loads(msgspec.json.encode(asked))["jobs"][0]["result"] == {"big": "x" * 10}
    # The column is not even read without the request.
    plain_sql = str(list_jobs_statement(filters, after=None, limit=1))
    asked_sql = str(list_jobs_statement(filters, after=None, limit=1, with_result=True))
    assert "dl_jobs.result" not in plain_sql
    assert "dl_jobs.result" in asked_sql


async def test_job_results_reads_status_and_result_by_id(
    service: JobService,
    manager: JobManager,
    sessions: async_sessionmaker[AsyncSession],
    db: asyncpg.Connection,
) -> None:
    done = await new_job(service)
    await manager.finish_many(db, [succeeded(done, await start(db, manager, done), 7)], WORKER_ID)
    waiting = await new_job(service)
    unknown = [uuid.uuid4() for _ in range(READ_CHUNK)]  # the known ones land in two chunks

    found = await JobResults(sessions).read([done, *unknown, waiting])

    assert set(found) == {done, waiting}
    assert (found[done].status, found[done].result) == ("succeeded", 7)
    assert (found[waiting].status, found[waiting].result) == ("queued", None)
