"""kill -9 busy workers while a concurrency group of three drains: never more than three
run at once, nothing lost or counted twice.

A killed worker's session ends with it, and its slot with the session: another job of the
group may start at once, long before the reaper sees the dead job's lease. The run log says
when each body really ran; a killed run ends at the kill (tests/faults/checks.py).
"""

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

QUEUE = "etl.group-kills"
JOBS = 90
GROUP = "partner-api"
LIMIT = 3
KILLS = 5
KILL_EVERY_SEC = 1.0
CONCURRENCY = 4  # per worker: the fleet could run 12 at once
RUN_ARGS = {"steps": 3, "sleep": 0.1}
LEASE_TTL_SEC = 3
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.1"}


async def test_worker_kills_never_let_a_group_run_over_its_limit(
    jobs_db: JobsDb, fleet: WorkerFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    for _ in range(3):
        fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)
    for worker in fleet.workers:
        await fleet.wait_ready(worker)

    rng = random.Random(17)
    specs = [
        JobCreate(
            queue=QUEUE,
            task="test.record",
            args=RUN_ARGS,
            lock_key=f"job-{i}",  # no lock_key in common: only the group limits them
            concurrency_key=GROUP,
            concurrency_limit=LIMIT,
            lease_ttl_sec=LEASE_TTL_SEC,
        )
        for i in range(JOBS)
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

    await wait_drained(jobs_db, JOBS, timeout=120, diagnostics=fleet.diagnostics)
    outcome = await check_jobs(jobs_db, set(job_ids), worker_ends=worker_ends)
    recovered_at = await jobs_db.scalar("SELECT max(finished_at) FROM dl_jobs")
    expired = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events WHERE event = 'lease_expired'"
    )
    waits = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events WHERE event = 'concurrency_busy'"
    )
    report(
        figures_line(
            "concurrency_group_kills",
            outcome,
            recovery_sec=(recovered_at - last_fault).total_seconds(),
            kills=len(worker_ends),
            leases_expired=expired,
            group_peak=outcome.group_peaks.get(GROUP),
            group_waits=waits,
        ),
        capsys,
    )
    outcome.assert_clean(fleet.diagnostics())
    assert outcome.group_peaks[GROUP] <= LIMIT
    assert expired > 0, "no killed worker had a job in flight: nothing was tested"
    assert waits > 0, "no job waited for the group: nothing was tested"
