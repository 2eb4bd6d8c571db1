"""kill -9 busy workers while a batch drains: its callback is still created exactly once,
after the last job ended, with counts that match how the jobs ended."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime

import pytest

from app.db.engine import create_session_factory
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_batch_in_session
from tests.faults.checks import kill_a_busy_worker, report
from tests.support.jobs_db import JobsDb
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

QUEUE = "etl.batch-kills"
JOBS = 120
KILLS = 4
KILL_EVERY_SEC = 1.0
CONCURRENCY = 4
LEASE_TTL_SEC = 3
RUN_ARGS = {"steps": 3, "sleep": 0.1}


async def test_worker_kills_leave_a_batch_with_one_callback_and_true_counts(
    jobs_db: JobsDb, fleet: WorkerFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        fleet.start(queues={QUEUE: CONCURRENCY})
    for worker in fleet.workers:
        await fleet.wait_ready(worker)
    specs = [
        JobCreate(
            queue=QUEUE,
            task="noop",
            args=RUN_ARGS,
            lock_key=f"part-{n}",
            max_attempts=2,  # a job killed twice ends lost: the counts must say so
            lease_ttl_sec=LEASE_TTL_SEC,
        )
        for n in range(JOBS)
    ]
    # The callback goes to a queue no worker serves: it is counted, not run.
    callback = JobCreate(queue="etl.batch-done", task="noop", lock_key="batch-done")
    async with create_session_factory(jobs_db.engine)() as session, session.begin():
        batch = await enqueue_batch_in_session(session, specs, callback, jobs_db.settings)

    rng = random.Random(23)
    killed: dict[str, datetime] = {}
    for _ in range(KILLS):
        await asyncio.sleep(KILL_EVERY_SEC)
        worker_id, killed_at = await kill_a_busy_worker(jobs_db, fleet, rng)
        killed[worker_id] = killed_at
        fleet.start(queues={QUEUE: CONCURRENCY})
    pending = await jobs_db.scalar(
        "SELECT pending FROM dl_batches WHERE batch_id = :b", b=batch.batch_id
    )
    assert pending > 0, "the batch ended before the last kill: nothing was tested"

    async def completed() -> bool:
        done = await jobs_db.scalar(
            "SELECT completed_at IS NOT NULL FROM dl_batches WHERE batch_id = :b",
            b=batch.batch_id,
        )
        return bool(done)

    await wait_until(
        completed, timeout=120, what="the batch to complete", diagnostics=fleet.diagnostics
    )
    fleet.stop_all()

    ended = {
        row["status"]: row["n"]
        for row in await jobs_db.fetch(
            "SELECT status, count(*) AS n FROM dl_jobs WHERE batch_id = :b GROUP BY status",
            b=batch.batch_id,
        )
    }
    callbacks = await jobs_db.fetch(
        "SELECT args, created_at FROM dl_jobs WHERE lock_key = 'batch-done'"
    )
    last_end = await jobs_db.scalar(
        "SELECT max(finished_at) FROM dl_jobs WHERE batch_id = :b", b=batch.batch_id
    )
    expired = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events WHERE event = 'lease_expired'"
    )
    report(
        f"[faults] batch_kills: jobs={JOBS} kills={len(killed)} leases_expired={expired}"
        f" ended={dict(sorted(ended.items()))} callbacks={len(callbacks)}",
        capsys,
    )
    assert len(callbacks) == 1
    args = callbacks[0]["args"]
    counts = json.loads(args)["batch"] if isinstance(args, str) else args["batch"]
    assert counts["total"] == JOBS == sum(ended.values())
    for status in ("succeeded", "failed", "canceled", "lost"):
        assert counts[status] == ended.get(status, 0), (status, counts, ended)
    assert callbacks[0]["created_at"] >= last_end
    assert expired > 0, "no killed worker had a job in flight: nothing was tested"
