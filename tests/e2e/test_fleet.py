"""A fleet: three workers share one queue's load; WORKER_ID names each in jobs, events, logs."""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from app.db.engine import create_session_factory
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_many_in_session
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import FINAL, JobsDb
from tests.support.logs import log_records
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

WORKER_IDS = ("w1", "w2", "w3")
QUEUE = "etl.fleet"
JOBS = 300
LOCK_KEYS = 15
RUN_ARGS = {"steps": 1, "sleep": 0.02}
DRAIN_TIMEOUT_SEC = 60.0

Interval = tuple[datetime, datetime]


def _assert_serial(intervals_by_key: dict[str, list[Interval]], source: str) -> None:
    """Within each key, every interval ends before the next one starts."""
    for key, intervals in intervals_by_key.items():
        ordered = sorted(intervals)
        for previous, current in itertools.pairwise(ordered):
            assert previous[1] <= current[0], (
                f"{source}: two runs of lock_key {key!r} overlapped: {previous} and {current}"
            )


async def _enqueue_load(jobs_db: JobsDb) -> dict[uuid.UUID, str]:
    """JOBS test.record jobs over LOCK_KEYS keys in one transaction; their keys by job id."""
    specs = [
        JobCreate(queue=QUEUE, task="test.record", args=RUN_ARGS, lock_key=f"key-{i % LOCK_KEYS}")
        for i in range(JOBS)
    ]
    async with create_session_factory(jobs_db.engine)() as session, session.begin():
        results = await enqueue_many_in_session(session, specs, jobs_db.settings)
    return {result.job_id: spec.lock_key for result, spec in zip(results, specs, strict=True)}


async def _wait_drained(jobs_db: JobsDb, fleet: WorkerFleet) -> None:
    """Poll until every job is final; fail at once if one ended other than succeeded."""

    async def drained() -> bool:
        counts = {
            row["status"]: row["n"]
            for row in await jobs_db.fetch(
                "SELECT status, count(*) AS n FROM dl_jobs GROUP BY status"
            )
        }
        unexpected = {s: n for s, n in counts.items() if s in FINAL and s != "succeeded"}
        assert not unexpected, f"jobs ended badly: {unexpected}\n{fleet.diagnostics()}"
        return bool(counts.get("succeeded", 0) == JOBS)

    done: bool = await wait_until(
        drained,
        timeout=DRAIN_TIMEOUT_SEC,
        interval=0.2,
        what=f"{JOBS} jobs to succeed",
        diagnostics=fleet.diagnostics,
    )
    assert done


def _by_job(rows: list[dict[str, Any]]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    grouped: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["job_id"]].append(row)
    return grouped


async def test_fleet_runs_a_shared_load_once_per_job_with_lock_keys_respected(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    # 0: no fleet-wide limit, so the lock_keys alone decide what runs at once.
    for worker_id in WORKER_IDS:
        fleet.start(worker_id, queues={QUEUE: 0})
    for worker in fleet.workers:
        await fleet.wait_ready(worker)

    keys = await _enqueue_load(jobs_db)
    assert len(keys) == JOBS
    await _wait_drained(jobs_db, fleet)

    jobs = {row["job_id"]: row for row in await jobs_db.fetch("SELECT * FROM dl_jobs")}
    assert set(jobs) == set(keys)
    assert all(row["attempt"] == 1 for row in jobs.values()), "no job needed a second attempt"
    assert {row["worker_id"] for row in jobs.values()} == set(WORKER_IDS), "all three took part"

    # Ran once: one pipeline run per job, by the worker the job names.
    runs = _by_job(await jobs_db.fetch("SELECT * FROM e2e_runs"))
    assert set(runs) == set(keys)
    for job_id, job_runs in runs.items():
        assert len(job_runs) == 1, f"job {job_id} ran {len(job_runs)} times"
        [run] = job_runs
        assert run["attempt"] == 1
        assert run["finished_at"] is not None
        assert run["worker_id"] == jobs[job_id]["worker_id"]

    events = _by_job(await jobs_db.fetch("SELECT * FROM dl_job_events ORDER BY id"))
    event_intervals: dict[str, list[Interval]] = defaultdict(list)
    busy_seen = 0
    for job_id, job_events in events.items():
        names = [e["event"] for e in job_events]
        assert names.count("started") == 1, f"job {job_id}: {names}"
        assert names.count("succeeded") == 1, f"job {job_id}: {names}"
        assert set(names) <= {"queued", "lock_busy", "started", "succeeded"}, names
        owner = jobs[job_id]["worker_id"]
        by_name = {e["event"]: e for e in job_events}
        assert by_name["started"]["details"]["worker_id"] == owner
        assert by_name["succeeded"]["details"]["worker_id"] == owner
        # Whoever found the key busy is named too; any worker may have.
        for busy in (e for e in job_events if e["event"] == "lock_busy"):
            busy_seen += 1
            assert busy["details"]["worker_id"] in WORKER_IDS
            assert busy["details"]["lock_key"] == keys[job_id]
        event_intervals[keys[job_id]].append((by_name["started"]["at"], by_name["succeeded"]["at"]))

    assert busy_seen, "twenty jobs per key must have met busy locks, or nothing was tested"

    # Mutual exclusion, from the pipelines' own database-clock times and from the events.
    run_intervals: dict[str, list[Interval]] = defaultdict(list)
    for job_id, [run] in runs.items():
        run_intervals[keys[job_id]].append((run["started_at"], run["finished_at"]))
    _assert_serial(run_intervals, "e2e_runs")
    _assert_serial(event_intervals, "events")

    # Each worker's log lines (JSON) carry its own id, and only its own.
    for worker in fleet.workers:
        records = log_records(worker.log())
        assert any("serving" in record["event"] for record in records), worker.tail()
        others = {other for other in WORKER_IDS if other != worker.worker_id}
        for record in records:
            assert record["worker_id"] == worker.worker_id, record
            assert not others & {str(value) for value in record.values()}, record
