"""A pipeline that kills its worker on every attempt ends lost; the rest of the load succeeds."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from app.domain.spec import JobCreate
from tests.faults.checks import check_jobs, figures_line, report, wait_drained
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb, enqueue_all
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

QUEUE = "etl.crash"
JOBS = 150
WORKERS = 3
CONCURRENCY = 6  # fleet-wide
MAX_ATTEMPTS = 3
LEASE_TTL_SEC = 2
RUN_ARGS = {"steps": 3, "sleep": 0.1}
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.1"}


async def test_crashing_pipeline_ends_lost_and_the_fleet_keeps_working(
    jobs_db: JobsDb, fleet: WorkerFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    for _ in range(WORKERS):
        fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)
    for worker in fleet.workers:
        await fleet.wait_ready(worker)

    # Its own lock_key for each job: a crash ends its neighbours' runs at an unknown moment
    # (bounded by when the test saw the worker dead), too coarse to judge a shared key by.
    crash = JobCreate(
        queue=QUEUE,
        task="test.crash",
        args={"sleep": 1.0},
        lock_key="crash",
        max_attempts=MAX_ATTEMPTS,
        lease_ttl_sec=LEASE_TTL_SEC,
    )
    normal = [
        JobCreate(
            queue=QUEUE,
            task="test.record",
            args=RUN_ARGS,
            lock_key=f"key-{i}",
            lease_ttl_sec=LEASE_TTL_SEC,
        )
        for i in range(JOBS - 1)
    ]
    job_ids = await enqueue_all(jobs_db, [crash, *normal])
    crash_id = job_ids[0]

    worker_ends: dict[str, datetime] = {}

    async def supervise() -> bool:
        """Replace dead workers, as a process supervisor would; true once everything ended."""
        for worker in fleet.workers:
            if not worker.alive() and worker.worker_id not in worker_ends:
                worker_ends[worker.worker_id] = await jobs_db.now()  # an upper bound
                fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)
        return bool(
            await jobs_db.scalar(
                "SELECT count(*) = 0 FROM dl_jobs"
                " WHERE status NOT IN ('succeeded', 'failed', 'lost', 'canceled')"
            )
        )

    await wait_until(
        supervise, timeout=90, interval=0.1, what="every job to end", diagnostics=fleet.diagnostics
    )
    await wait_drained(jobs_db, JOBS, timeout=5, diagnostics=fleet.diagnostics)
    error = f"lease expired on the last attempt ({MAX_ATTEMPTS})"
    outcome = await check_jobs(
        jobs_db,
        set(job_ids),
        worker_ends=worker_ends,
        allowed_endings={crash_id: ("lost", error)},
    )
    last_crash = await _last_start(jobs_db, crash_id)
    recovered_at = await jobs_db.scalar("SELECT max(finished_at) FROM dl_jobs")
    crashed = [w for w in fleet.workers if w.returncode == 1]
    report(
        figures_line(
            "crashing_pipeline",
            outcome,
            recovery_sec=(recovered_at - last_crash).total_seconds(),
            crashed_workers=len(crashed),
            neighbours_rerun=await jobs_db.scalar(
                "SELECT count(DISTINCT job_id) FROM dl_job_events"
                " WHERE event = 'lease_expired' AND job_id <> :crash",
                crash=crash_id,
            ),
        ),
        capsys,
    )
    outcome.assert_clean(fleet.diagnostics())
    assert len(crashed) == MAX_ATTEMPTS, "each attempt killed exactly one worker"
    # The reaper may also redispatch a queued job whose dispatch a dead worker had picked.
    lifecycle = [
        (e["event"], e["attempt"])
        for e in await jobs_db.events(crash_id)
        if e["event"] != "redispatched"
    ]
    assert lifecycle == [
        ("queued", 0),
        *[
            pair
            for attempt in range(1, MAX_ATTEMPTS)
            for pair in (("started", attempt), ("lease_expired", attempt))
        ],
        ("started", MAX_ATTEMPTS),
        ("lost", MAX_ATTEMPTS),
    ]
    assert len(fleet.alive()) == WORKERS


async def _last_start(jobs_db: JobsDb, job_id: uuid.UUID) -> datetime:
    started = [e["at"] for e in await jobs_db.events(job_id) if e["event"] == "started"]
    return started[-1]
