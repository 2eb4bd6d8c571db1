"""Starting a job's attempt in integration tests, as a worker's lock session does."""

from __future__ import annotations

import uuid

import asyncpg

from app.domain.attempts import StartRequest
from app.jobs.manager import JobManager


async def start_attempt(
    db: asyncpg.Connection, manager: JobManager, job_id: uuid.UUID, worker_id: str
) -> int:
    """Start the job's current dispatch on `db` and give its lock back; the attempt number."""
    pgq_job_id = await db.fetchval("SELECT pgq_job_id FROM dl_jobs WHERE job_id = $1", job_id)
    answers = await manager.start_many(db, [StartRequest(job_id, pgq_job_id)], [], worker_id)
    started = answers[job_id].attempt
    assert started is not None, answers
    await manager.unlock_keys(db, [started.lock_key])
    return started.attempt
