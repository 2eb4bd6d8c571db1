"""SIGTERM busy workers during load: short jobs finish, long ones are requeued uncounted."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

import pytest

from app.domain.spec import JobCreate
from tests.faults.checks import check_jobs, figures_line, report, wait_drained
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb, enqueue_all
from tests.support.waiting import WaitTimeout, wait_until
from tests.support.workers import WorkerFleet

QUEUE = "etl.sigterm"
SHORT_JOBS = 60
LONG_JOBS = 30
LOCK_KEYS = 30
WORKERS = 3
CONCURRENCY = 9  # fleet-wide
STOPS = 3
STOP_EVERY_SEC = 1.5
SHORT_ARGS = {"steps": 2, "sleep": 0.2}  # done within the drain
LONG_ARGS = {"steps": 8, "sleep": 0.25}  # outlasts it
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.1", "DL_SHUTDOWN_TIMEOUT_SEC": "1"}
# A long job started this recently still has over a second of steps left when the drain
# (1 s) ends, so stopping its worker must interrupt it.
FRESH_SEC = 0.4


async def test_sigterm_during_load_requeues_without_counting(
    jobs_db: JobsDb, fleet: WorkerFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    for _ in range(WORKERS):
        fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)
    for worker in fleet.workers:
        await fleet.wait_ready(worker)

    rng = random.Random(5)
    kinds = [SHORT_ARGS] * SHORT_JOBS + [LONG_ARGS] * LONG_JOBS
    rng.shuffle(kinds)
    specs = [
        JobCreate(queue=QUEUE, task="test.record", args=args, lock_key=f"key-{rng.randrange(30)}")
        for args in kinds
    ]
    job_ids = await enqueue_all(jobs_db, specs)

    worker_ends: dict[str, datetime] = {}
    left_running: dict[str, int] = {}
    for _ in range(STOPS):
        await asyncio.sleep(STOP_EVERY_SEC)
        busy = await _workers_running_a_fresh_long_job(jobs_db)
        alive = fleet.alive()
        victim = rng.choice([w for w in alive if w.worker_id in busy] or alive)
        victim.terminate()
        assert await victim.wait_exit(timeout=15) == 0, victim.tail()
        # After the exit: an upper bound for any run it neither finished nor gave back.
        worker_ends[victim.worker_id] = await jobs_db.now()
        left_running[victim.worker_id] = await jobs_db.scalar(
            "SELECT count(*) FROM dl_jobs WHERE status = 'running' AND worker_id = :w",
            w=victim.worker_id,
        )
        fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)
    last_fault = worker_ends[victim.worker_id]

    await wait_drained(jobs_db, len(specs), timeout=60, diagnostics=fleet.diagnostics)
    outcome = await check_jobs(jobs_db, set(job_ids), worker_ends=worker_ends)
    recovered_at = await jobs_db.scalar("SELECT max(finished_at) FROM dl_jobs")
    counts = {
        row["event"]: row["n"]
        for row in await jobs_db.fetch(
            "SELECT event, count(*) AS n FROM dl_job_events"
            " WHERE event IN ('interrupted', 'lease_expired') GROUP BY event"
        )
    }
    report(
        figures_line(
            "sigterm_under_load",
            outcome,
            recovery_sec=(recovered_at - last_fault).total_seconds(),
            stops=len(worker_ends),
            interrupted=counts.get("interrupted", 0),
            leases_expired=counts.get("lease_expired", 0),
            left_running=sum(left_running.values()),
        ),
        capsys,
    )
    outcome.assert_clean(fleet.diagnostics())
    assert left_running == dict.fromkeys(worker_ends, 0), "a stopped worker left jobs running"
    assert counts.get("interrupted", 0) > 0, "no long job was interrupted: nothing was tested"
    assert counts.get("lease_expired", 0) == 0, "a graceful stop must not leave a lease to expire"
    # A given-back attempt is not counted: every job succeeded on its first counted attempt.
    attempts = await jobs_db.fetch("SELECT attempt, count(*) AS n FROM dl_jobs GROUP BY attempt")
    assert attempts == [{"attempt": 1, "n": len(specs)}]


async def _workers_running_a_fresh_long_job(jobs_db: JobsDb, timeout: float = 10) -> set[str]:
    """Workers running a long job that cannot finish within the drain: victims worth stopping.

    Picking any busy worker made the interrupt a matter of luck (under CI's load a run once
    stopped only workers whose jobs all finished within the drain, and tested nothing).
    """

    async def busy_workers() -> set[str]:
        rows = await jobs_db.fetch(
            "SELECT DISTINCT worker_id FROM dl_jobs WHERE status = 'running'"
            " AND (args->>'steps')::int = :steps"
            " AND started_at > now() - make_interval(secs => :fresh)",
            steps=LONG_ARGS["steps"],
            fresh=FRESH_SEC,
        )
        return {row["worker_id"] for row in rows}

    try:
        return await wait_until(busy_workers, timeout=timeout, what="a fresh long job running")
    except WaitTimeout:
        return set()  # none this time: the caller stops any worker instead
