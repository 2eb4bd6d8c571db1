"""kill -9 a random busy worker ten times during 500 short jobs; a replacement starts each time."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

import pytest

from app.domain.spec import JobCreate
from tests.faults.checks import check_jobs, figures_line, kill_a_busy_worker, report, wait_drained
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb, enqueue_all
from tests.support.workers import WorkerFleet

QUEUE = "etl.kills"
JOBS = 500
LOCK_KEYS = 50
KILLS = 10
KILL_EVERY_SEC = 0.8
CONCURRENCY = 12  # fleet-wide: at most this many of the queue's jobs run at once
RUN_ARGS = {"steps": 4, "sleep": 0.1}
LEASE_TTL_SEC = 3  # a killed worker's jobs come back this long after their last heartbeat
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.1"}


async def test_random_worker_kills_lose_nothing(
    jobs_db: JobsDb, fleet: WorkerFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    for _ in range(3):
        fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)
    for worker in fleet.workers:
        await fleet.wait_ready(worker)

    rng = random.Random(9)
    specs = [
        JobCreate(
            queue=QUEUE,
            task="test.record",
            args=RUN_ARGS,
            lock_key=f"key-{rng.randrange(LOCK_KEYS)}",
            lease_ttl_sec=LEASE_TTL_SEC,
        )
        for _ in range(JOBS)
    ]
    job_ids = await enqueue_all(jobs_db, specs)

    worker_ends: dict[str, datetime] = {}
    for _ in range(KILLS):
        await asyncio.sleep(KILL_EVERY_SEC)
        worker_id, killed_at = await kill_a_busy_worker(jobs_db, fleet, rng)
        worker_ends[worker_id] = killed_at
        fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)  # as a supervisor would
    last_fault = killed_at
    undone = await jobs_db.scalar("SELECT count(*) FROM dl_jobs WHERE status <> 'succeeded'")
    assert undone > 0, "the load ended before the last kill: nothing was tested"

    await wait_drained(jobs_db, JOBS, timeout=90, diagnostics=fleet.diagnostics)
    outcome = await check_jobs(jobs_db, set(job_ids), worker_ends=worker_ends)
    recovered_at = await jobs_db.scalar("SELECT max(finished_at) FROM dl_jobs")
    expired = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events WHERE event = 'lease_expired'"
    )
    report(
        figures_line(
            "worker_kills",
            outcome,
            recovery_sec=(recovered_at - last_fault).total_seconds(),
            kills=len(worker_ends),
            leases_expired=expired,
        ),
        capsys,
    )
    outcome.assert_clean(fleet.diagnostics())
    assert expired > 0, "no killed worker had a job in flight: nothing was tested"
    assert len(fleet.alive()) == 3, "the survivors and the replacements keep running"
