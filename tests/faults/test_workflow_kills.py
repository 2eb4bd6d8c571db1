"""kill -9 busy workers again and again while a workflow fans out and back in: no step is lost,
every step ends, and no step's pipeline starts before all its parents succeeded.

The times are the database's: a parent's success is its dl_jobs.finished_at (written by the
finish that committed it), a child's starts are its started events and the rows its pipeline
body (`test.record`) wrote on the database clock when it began, every attempt included.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

import msgspec
import pytest

from app.db.engine import create_session_factory
from app.domain.workflows import WorkflowCreate
from app.jobs.enqueue import enqueue_workflow_in_session
from tests.faults.checks import check_jobs, figures_line, kill_a_busy_worker, report, wait_drained
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb
from tests.support.workers import WorkerFleet

QUEUE = "etl.wfkills"
FAN = 300  # parallel steps between the root and the fan-in
KILLS = 8
KILL_EVERY_SEC = 0.8
CONCURRENCY = 12
RUN_ARGS = {"steps": 4, "sleep": 0.1}
LEASE_TTL_SEC = 3  # a killed worker's steps come back this long after their last heartbeat
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.1"}
# Every edge whose child began (an attempt's start event, or a run of its body) before its
# parent's success committed, or whose parent did not succeed.
EARLY = """
    WITH child_starts AS (
        SELECT e.job_id, e.at FROM dl_job_events e WHERE e.event = 'started'
        UNION ALL
        SELECT r.job_id, r.started_at FROM e2e_runs r
    )
    SELECT c.step_name AS child, p.step_name AS parent, s.at AS child_started,
           p.finished_at AS parent_finished, p.status AS parent_status
    FROM dl_job_dependencies d
    JOIN dl_jobs c ON c.job_id = d.child_id
    JOIN dl_jobs p ON p.job_id = d.parent_id
    JOIN child_starts s ON s.job_id = c.job_id
    WHERE p.status <> 'succeeded' OR s.at < p.finished_at
"""


def step(name: str, *parents: str) -> dict[str, object]:
    job = {
        "queue": QUEUE,
        "task": "test.record",
        "lock_key": f"wf:{name}",
        "args": RUN_ARGS,
        "lease_ttl_sec": LEASE_TTL_SEC,
    }
    return {"name": name, "job": job, "depends_on": list(parents)}


@pytest.mark.timeout(300)
async def test_worker_kills_during_a_fan_in_start_no_step_early_and_lose_none(
    jobs_db: JobsDb, fleet: WorkerFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    for _ in range(3):
        fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)
    for worker in fleet.workers:
        await fleet.wait_ready(worker)
    middle = [step(f"part-{i}", "root") for i in range(FAN)]
    steps = [step("root"), *middle, step("fan-in", *(s["name"] for s in middle))]
    steps.append(step("after", "fan-in"))
    spec = msgspec.convert({"name": "kills", "steps": steps}, WorkflowCreate)
    async with create_session_factory(jobs_db.engine)() as session, session.begin():
        created = await enqueue_workflow_in_session(session, spec, jobs_db.settings)
    job_ids = {s.job_id for s in created.steps}

    rng = random.Random(18)
    worker_ends: dict[str, datetime] = {}
    for _ in range(KILLS):
        await asyncio.sleep(KILL_EVERY_SEC)
        worker_id, killed_at = await kill_a_busy_worker(jobs_db, fleet, rng)
        worker_ends[worker_id] = killed_at
        fleet.start(queues={QUEUE: CONCURRENCY}, env=ENV)  # as a supervisor would
    waiting = await jobs_db.scalar(
        "SELECT count(*) FROM dl_jobs WHERE step_name = 'fan-in' AND status = 'waiting'"
    )

    await wait_drained(jobs_db, len(job_ids), timeout=150, diagnostics=fleet.diagnostics)
    outcome = await check_jobs(jobs_db, job_ids, worker_ends=worker_ends)
    early = await jobs_db.fetch(EARLY)
    expired = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events WHERE event = 'lease_expired'"
    )
    fan_in = await jobs_db.fetch(
        "SELECT started_at, attempt FROM dl_jobs WHERE step_name = 'fan-in'"
    )
    last_part = await jobs_db.scalar(
        "SELECT max(finished_at) FROM dl_jobs WHERE step_name LIKE 'part-%'"
    )
    report(
        figures_line(
            "workflow_kills",
            outcome,
            recovery_sec=None,
            kills=len(worker_ends),
            leases_expired=expired,
            early_starts=len(early),
            fan_in_after_last_part_sec=round(
                (fan_in[0]["started_at"] - last_part).total_seconds(), 3
            ),
        ),
        capsys,
    )
    outcome.assert_clean(fleet.diagnostics())
    assert early == [], early[:10]
    assert waiting == 1, "the fan-in was released before the last kill: nothing was tested"
    assert expired > 0, "no killed worker had a step in flight: nothing was tested"
    assert fan_in[0]["started_at"] > last_part
