"""Invariant 3: jobs sharing a lock_key never overlap, across worker processes."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb
from tests.support.workers import WorkerFleet

# Each worker serves its own queue, so two jobs on different queues run in different processes.
QUEUE_A = "etl.a"
QUEUE_B = "etl.b"


def _overlap(first: tuple[datetime, datetime], second: tuple[datetime, datetime]) -> bool:
    return first[0] < second[1] and second[0] < first[1]


async def _runs(jobs_db: JobsDb, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    rows = await jobs_db.fetch(
        "SELECT job_id, attempt, worker_id, started_at, finished_at FROM e2e_runs"
        " WHERE job_id = ANY(:ids)",
        ids=job_ids,
    )
    assert sorted(row["job_id"] for row in rows) == sorted(job_ids), "one run per job"
    assert all(row["finished_at"] is not None for row in rows)
    return {row["job_id"]: row for row in rows}


async def _event_interval(jobs_db: JobsDb, job_id: uuid.UUID) -> tuple[datetime, datetime]:
    events = await jobs_db.events(job_id)
    started = [e["at"] for e in events if e["event"] == "started"]
    finished = [e["at"] for e in events if e["event"] == "succeeded"]
    assert len(started) == 1
    assert len(finished) == 1
    return started[0], finished[0]


async def test_same_lock_key_never_overlaps_and_other_keys_run_in_parallel(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    await fleet.start_ready("wa", queues={QUEUE_A: 2})
    await fleet.start_ready("wb", queues={QUEUE_B: 2})

    # Different keys: two in one process, one in the other; all three run at once.
    parallel = [
        await jobs_db.enqueue("test.record", {"steps": 1, "sleep": 1.5}, queue=queue)
        for queue in (QUEUE_A, QUEUE_A, QUEUE_B)
    ]
    for job_id in parallel:
        await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    runs = await _runs(jobs_db, parallel)
    assert {runs[job_id]["worker_id"] for job_id in parallel} == {"wa", "wb"}
    for first, second in itertools.combinations(parallel, 2):
        a, b = runs[first], runs[second]
        assert _overlap((a["started_at"], a["finished_at"]), (b["started_at"], b["finished_at"])), (
            "jobs with different lock keys should have run in parallel"
        )

    # One key, two jobs per process and two processes: never two at a time.
    serial = [
        await jobs_db.enqueue(
            "test.record", {"steps": 2, "sleep": 0.3}, queue=queue, lock_key="one-key"
        )
        for queue in (QUEUE_A, QUEUE_B, QUEUE_A, QUEUE_B)
    ]
    for job_id in serial:
        await jobs_db.wait_status(job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics)
    runs = await _runs(jobs_db, serial)
    assert {runs[job_id]["worker_id"] for job_id in serial} == {"wa", "wb"}
    intervals = {job_id: await _event_interval(jobs_db, job_id) for job_id in serial}
    for first, second in itertools.combinations(serial, 2):
        a, b = runs[first], runs[second]
        assert not _overlap(
            (a["started_at"], a["finished_at"]), (b["started_at"], b["finished_at"])
        ), f"jobs {first} and {second} with one lock key overlapped"
        assert not _overlap(intervals[first], intervals[second])
        assert runs[first]["attempt"] == runs[second]["attempt"] == 1

    # Whoever found the key busy waited (lock_busy) without spending an attempt.
    busy = await jobs_db.fetch(
        "SELECT job_id, attempt, details FROM dl_job_events"
        " WHERE event = 'lock_busy' AND job_id = ANY(:ids)",
        ids=serial,
    )
    assert busy, "four jobs on one key must have met a busy lock"
    assert all(event["details"]["lock_key"] == "one-key" for event in busy)
    for job_id in serial:
        row = await jobs_db.job(job_id)
        assert row["attempt"] == 1
