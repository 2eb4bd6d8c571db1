"""Workflows run by real workers: a diamond hands results down, a failed step cancels what
depends on it and its retry lets them run, and a 1,000-step fan-out/fan-in finishes with no
step started before all its parents succeeded (read from the database's timestamps)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
import pytest

from app.db.engine import create_session_factory
from app.domain.workflows import WorkflowCreate, WorkflowCreated
from app.jobs.enqueue import enqueue_workflow_in_session
from tests.support.jobs_db import JobsDb
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

QUEUE = "etl.default"
# A child released while its worker was idle is picked at once; no poll is waited for.
EARLY_STARTS = """
    SELECT c.step_name AS child, p.step_name AS parent, c.started_at, p.finished_at
    FROM dl_job_dependencies d
    JOIN dl_jobs c ON c.job_id = d.child_id JOIN dl_jobs p ON p.job_id = d.parent_id
    WHERE c.workflow_id = :workflow
      AND c.started_at IS NOT NULL
      AND (p.finished_at IS NULL OR p.status <> 'succeeded' OR c.started_at < p.finished_at)
"""


def step(
    name: str, *parents: str, job: dict[str, Any] | None = None, **args: Any
) -> dict[str, Any]:
    fields = {"queue": QUEUE, "task": "noop", "lock_key": f"wf:{name}:{uuid.uuid4().hex[:6]}"}
    return {
        "name": name,
        "job": {**fields, **(job or {}), "args": args},
        "depends_on": list(parents),
    }


async def create(jobs_db: JobsDb, steps: list[dict[str, Any]]) -> WorkflowCreated:
    spec = msgspec.convert({"name": "e2e", "steps": steps}, WorkflowCreate)
    async with create_session_factory(jobs_db.engine)() as session, session.begin():
        return await enqueue_workflow_in_session(session, spec, jobs_db.settings)


async def wait_done(
    jobs_db: JobsDb, fleet: WorkerFleet, workflow: uuid.UUID, timeout: float
) -> None:
    """Until no step of the workflow is waiting, queued or running."""

    async def done() -> bool:
        live = await jobs_db.scalar(
            "SELECT count(*) FROM dl_jobs WHERE workflow_id = :workflow"
            " AND status IN ('waiting', 'queued', 'running')",
            workflow=workflow,
        )
        return live == 0

    await wait_until(done, timeout=timeout, what="every step to end", diagnostics=fleet.diagnostics)


async def steps_by_name(jobs_db: JobsDb, workflow: uuid.UUID) -> dict[str, dict[str, Any]]:
    rows = await jobs_db.fetch(
        "SELECT * FROM dl_jobs WHERE workflow_id = :workflow", workflow=workflow
    )
    return {row["step_name"]: row for row in rows}


async def test_workflow_diamond_runs_in_order_and_hands_results_down(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready("w1", queues={QUEUE: 4})
    created = await create(
        jobs_db,
        [
            step("extract", result={"rows": 3}),
            step("left", "extract", result="L"),
            step("right", "extract", result="R"),
            step("load", "left", "right", parent_results=True),
        ],
    )

    await wait_done(jobs_db, fleet, created.workflow_id, timeout=60)

    steps = await steps_by_name(jobs_db, created.workflow_id)
    assert {name: row["status"] for name, row in steps.items()} == dict.fromkeys(
        ("extract", "left", "right", "load"), "succeeded"
    )
    result = steps["load"]["result"]
    result = json.loads(result) if isinstance(result, str) else result
    assert result == {"parents": {"left": "L", "right": "R"}, "result": None}
    assert await jobs_db.fetch(EARLY_STARTS, workflow=created.workflow_id) == []


async def test_workflow_failed_step_cancels_its_dependents_and_its_retry_runs_them(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready("w1", queues={QUEUE: 2})
    created = await create(
        jobs_db,
        [
            step("flaky", job={"max_attempts": 1}, fail=True, fail_attempts=1),
            step("after", "flaky"),
            step("last", "after"),
            step("cleanup", "flaky"),
        ],
    )
    flaky = created.steps[0].job_id
    await wait_done(jobs_db, fleet, created.workflow_id, timeout=60)
    steps = await steps_by_name(jobs_db, created.workflow_id)
    assert steps["flaky"]["status"] == "failed"
    assert (steps["after"]["status"], steps["after"]["canceled_by"]) == ("canceled", flaky)
    assert steps["last"]["canceled_by"] == steps["after"]["job_id"]
    assert "(step flaky), which ended failed" in steps["after"]["error"]

    await jobs_db.service.retry(flaky)
    await wait_done(jobs_db, fleet, created.workflow_id, timeout=60)

    steps = await steps_by_name(jobs_db, created.workflow_id)
    assert {name: row["status"] for name, row in steps.items()} == dict.fromkeys(
        ("flaky", "after", "last", "cleanup"), "succeeded"
    )
    assert await jobs_db.fetch(EARLY_STARTS, workflow=created.workflow_id) == []
    assert (await jobs_db.event_names(steps["after"]["job_id"]))[-5:] == [
        "canceled",
        "waiting",
        "queued",
        "started",
        "succeeded",
    ]


@pytest.mark.timeout(600)
async def test_workflow_of_1000_steps_fans_out_and_in_with_no_step_started_early(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    """1 root -> 998 parallel steps -> 1 sink, on two workers: every step runs once, and no
    step starts before each of its parents succeeded, by the database's own timestamps."""
    await fleet.start_ready("w1", queues={QUEUE: 8})
    await fleet.start_ready("w2", queues={QUEUE: 8})
    middle = [step(f"part-{i}", "root") for i in range(998)]
    created = await create(
        jobs_db, [step("root"), *middle, step("sink", *(s["name"] for s in middle))]
    )
    assert [s.status for s in created.steps].count("queued") == 1

    await wait_done(jobs_db, fleet, created.workflow_id, timeout=500)

    steps = await steps_by_name(jobs_db, created.workflow_id)
    assert len(steps) == 1000
    assert {row["status"] for row in steps.values()} == {"succeeded"}
    assert {row["attempt"] for row in steps.values()} == {1}
    starts = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events e JOIN dl_jobs j USING (job_id)"
        " WHERE j.workflow_id = :workflow AND e.event = 'started'",
        workflow=created.workflow_id,
    )
    assert starts == 1000
    assert await jobs_db.fetch(EARLY_STARTS, workflow=created.workflow_id) == []
    sink, last_part = steps["sink"], max(steps[s["name"]]["finished_at"] for s in middle)
    assert sink["started_at"] > last_part
