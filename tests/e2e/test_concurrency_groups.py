"""Concurrency groups: at most concurrency_limit jobs of a key run at once, across workers.

Intervals come from the database clock: each job's `started` and `succeeded` events, and
the run log `test.record` writes from inside the pipeline.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime

from app.domain.spec import JobCreate
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb, enqueue_all
from tests.support.overlap import most_at_once
from tests.support.workers import WorkerFleet

QUEUE = "etl.groups"
WORKERS = 3
CONCURRENCY = 4  # per worker: the fleet could run 12 at once, the group lets 3
RUN_ARGS = {"steps": 2, "sleep": 0.3}


async def _intervals(
    jobs_db: JobsDb, job_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[datetime, datetime]]:
    """Each job's one attempt, from its started event to its succeeded event."""
    found = {}
    for job_id in job_ids:
        events = await jobs_db.events(job_id)
        started = [e["at"] for e in events if e["event"] == "started"]
        succeeded = [e["at"] for e in events if e["event"] == "succeeded"]
        assert (len(started), len(succeeded)) == (1, 1), [e["event"] for e in events]
        found[job_id] = (started[0], succeeded[0])
    return found


async def _run_intervals(
    jobs_db: JobsDb, job_ids: list[uuid.UUID]
) -> list[tuple[datetime, datetime]]:
    rows = await jobs_db.fetch(
        "SELECT job_id, started_at, finished_at FROM e2e_runs WHERE job_id = ANY(:ids)",
        ids=job_ids,
    )
    assert sorted(row["job_id"] for row in rows) == sorted(job_ids), "one run per job"
    return [(row["started_at"], row["finished_at"]) for row in rows]


async def _start_fleet(fleet: WorkerFleet) -> None:
    for _ in range(WORKERS):
        fleet.start(queues={QUEUE: CONCURRENCY})
    for worker in fleet.workers:
        await fleet.wait_ready(worker)


async def test_a_group_of_three_never_runs_more_than_three_across_workers(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    await _start_fleet(fleet)
    specs = [
        JobCreate(
            queue=QUEUE,
            task="test.record",
            args=RUN_ARGS,
            lock_key=f"own-{i}",  # no lock_key in common: only the group holds them back
            concurrency_key="partner-api",
            concurrency_limit=3,
        )
        for i in range(10)
    ]
    job_ids = await enqueue_all(jobs_db, specs)

    for job_id in job_ids:
        await jobs_db.wait_status(job_id, "succeeded", timeout=60, diagnostics=fleet.diagnostics)

    intervals = await _intervals(jobs_db, job_ids)
    assert most_at_once(intervals.values()) <= 3, sorted(intervals.values())
    assert most_at_once(await _run_intervals(jobs_db, job_ids)) <= 3
    rows = await jobs_db.fetch("SELECT attempt FROM dl_jobs WHERE job_id = ANY(:ids)", ids=job_ids)
    assert [row["attempt"] for row in rows] == [1] * 10, "waiting spends no attempt"
    # The fleet had room for all ten at once: the group is what held some back, and said so.
    waits = await jobs_db.fetch(
        "SELECT details FROM dl_job_events WHERE event = 'concurrency_busy' AND job_id = ANY(:ids)",
        ids=job_ids,
    )
    assert waits, "no job waited for its group: nothing was tested"
    assert {
        (w["details"]["concurrency_key"], w["details"]["concurrency_limit"]) for w in waits
    } == {("partner-api", 3)}
    workers = await jobs_db.fetch(
        "SELECT DISTINCT worker_id FROM dl_jobs WHERE job_id = ANY(:ids)", ids=job_ids
    )
    assert len(workers) > 1, "the jobs ran on one worker only: the fleet was not tested"


async def test_a_job_with_a_lock_key_and_a_group_waits_for_both(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    await _start_fleet(fleet)
    # Three lock_keys would let three run at once; the group lets two.
    specs = [
        JobCreate(
            queue=QUEUE,
            task="test.record",
            args=RUN_ARGS,
            lock_key=f"account-{i % 3}",
            concurrency_key="two-at-a-time",
            concurrency_limit=2,
        )
        for i in range(9)
    ]
    job_ids = await enqueue_all(jobs_db, specs)

    for job_id in job_ids:
        await jobs_db.wait_status(job_id, "succeeded", timeout=60, diagnostics=fleet.diagnostics)

    intervals = await _intervals(jobs_db, job_ids)
    assert most_at_once(intervals.values()) <= 2, sorted(intervals.values())
    by_key = {job_id: spec.lock_key for job_id, spec in zip(job_ids, specs, strict=True)}
    for first, second in itertools.combinations(job_ids, 2):
        if by_key[first] == by_key[second]:
            (a_start, a_end), (b_start, b_end) = intervals[first], intervals[second]
            assert not (a_start < b_end and b_start < a_end), (by_key[first], first, second)
