"""2,000 jobs over 20 lock_keys on 3 workers: every job runs once and no key runs twice at once."""

from __future__ import annotations

import random
import time

import pytest

from app.domain.spec import JobCreate
from tests.faults.checks import check_jobs, figures_line, report, wait_drained
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb, enqueue_all
from tests.support.workers import WorkerFleet

QUEUE = "etl.contention"
JOBS = 2_000
LOCK_KEYS = 20
CONCURRENCY = 8  # per queue entry of each worker's WORKERS_JSON
RUN_ARGS = {"steps": 1, "sleep": 0.01}
# Lock-busy jobs come back quickly, or the 100 jobs of each key take minutes to get through.
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.05"}


async def test_lock_contention(
    jobs_db: JobsDb, fleet: WorkerFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    for name in ("w1", "w2", "w3"):
        fleet.start(name, queues={QUEUE: CONCURRENCY}, env=ENV)
    for worker in fleet.workers:
        await fleet.wait_ready(worker)

    # Keys in random order (seeded), so the jobs picked together often share one.
    pick = random.Random(20).randrange
    specs = [
        JobCreate(queue=QUEUE, task="test.record", args=RUN_ARGS, lock_key=f"key-{pick(LOCK_KEYS)}")
        for _ in range(JOBS)
    ]
    began = time.monotonic()
    job_ids = await enqueue_all(jobs_db, specs)
    await wait_drained(jobs_db, JOBS, timeout=150, diagnostics=fleet.diagnostics)
    drained = time.monotonic() - began

    outcome = await check_jobs(jobs_db, set(job_ids))
    busy = await jobs_db.scalar("SELECT count(*) FROM dl_job_events WHERE event = 'lock_busy'")
    workers = await jobs_db.scalar("SELECT count(DISTINCT worker_id) FROM e2e_runs")
    report(
        figures_line(
            "lock_contention",
            outcome,
            recovery_sec=None,
            drain_sec=f"{drained:.1f}",
            lock_busy=busy,
            workers=workers,
        ),
        capsys,
    )
    outcome.assert_clean()
    assert outcome.runs == JOBS
    assert busy > 0, "twenty keys over eight slots each must have met busy locks"
    assert workers == 3, "all three workers took part"
