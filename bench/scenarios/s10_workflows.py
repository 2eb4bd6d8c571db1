"""Scenario 10: a workflow's cost against plain jobs, and what the release trigger costs others.

On a running fleet, per repetition: N plain noop jobs created in one transaction, then a
workflow of N noop steps (1 root -> N-2 in parallel -> 1 sink) created in one transaction
(enqueue_workflow_in_session), the order alternating between repetitions. Each is timed
from its trigger (the creating transaction's start, dl_jobs.created_at) to its last finish;
the overhead per step is their difference over N. The fan-in's release is the time from the
last parallel step's finish to the sink's start. All times are the database's.

The trigger's cost for jobs without dependents: the lifecycle drain of scenario 2 with the
release trigger in place and with it disabled, alternating; the ratio should be 1 (its WHEN
clause skips every row of a job nobody depends on).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import asyncpg
import msgspec

from app.domain.workflows import WorkflowCreate
from app.jobs.enqueue import enqueue_many_in_session, enqueue_workflow_in_session
from bench.context import RunContext
from bench.enqueue import QUEUE, TASK, in_app, noop_spec
from bench.lifecycle import lifecycle_drain
from bench.measure import DrainIncomplete, db_now, drain_timeout
from bench.processes import Managed, Processes
from bench.report import ScenarioResult
from bench.stats import Spread, ratio

NUMBER = 10
TITLE = "workflows"
PLAIN = "N plain jobs, trigger to last finish"
WORKFLOW = "workflow of N steps (fan-out, fan-in), trigger to last step"
OVERHEAD = "overhead per step (workflow - plain) / N"
RELEASE = "fan-in release: last parent's finish to the sink's start"
WITH_TRIGGER = "plain drain, release trigger in place"
WITHOUT_TRIGGER = "plain drain, release trigger disabled"
TRIGGER_COST = "ratio in place / disabled (medians)"
POLL_SEC = 0.05
DISABLE = "ALTER TABLE dl_jobs DISABLE TRIGGER dl_jobs_dependents"


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Per repetition: plain jobs and a workflow on one fleet; the drains with and without."""
    config = ctx.config
    steps = config.workflow_steps
    result.settings = {
        **config.worker_settings(steps),
        "workflow": f"1 root -> {steps - 2:,} parallel -> 1 sink, noop steps",
        "created by": "enqueue_workflow_in_session / enqueue_many_in_session, one transaction",
        "drains (trigger cost)": f"{config.jobs:,} jobs, as scenario 2",
    }
    plain: list[float] = []
    workflow: list[float] = []
    overhead: list[float] = []
    release: list[float] = []
    with_trigger: list[float] = []
    without_trigger: list[float] = []
    try:
        for rep in range(config.reps):
            async with ctx.database(NUMBER) as dsn:
                timings = await _plain_and_workflow(ctx, dsn, steps, rep)
            plain.append(timings[0])
            workflow.append(timings[1])
            overhead.append((timings[1] - timings[0]) / steps * 1000)
            release.append(timings[2] * 1000)
            for disabled in (rep % 2 == 1, rep % 2 == 0):
                async with ctx.database(NUMBER) as dsn:
                    if disabled:
                        connection = await asyncpg.connect(dsn)
                        try:
                            await connection.execute(DISABLE)
                        finally:
                            await connection.close()
                    drained = await lifecycle_drain(
                        ctx,
                        dsn,
                        config.jobs,
                        scenario=NUMBER,
                        rep=f"{rep}{'off' if disabled else 'on'}",
                        prefix=f"s10d{rep}",
                    )
                (without_trigger if disabled else with_trigger).append(drained.dl_jobs)
            ctx.progress(
                f"s10 rep {rep + 1}: plain {plain[-1]:.2f} s, workflow {workflow[-1]:.2f} s,"
                f" {overhead[-1]:.2f} ms/step, fan-in release {release[-1]:.1f} ms;"
                f" drain {with_trigger[-1]:,.0f} jobs/s with the trigger,"
                f" {without_trigger[-1]:,.0f} without"
            )
    finally:
        result.add(PLAIN, "s", plain)
        result.add(WORKFLOW, "s", workflow)
        result.add(OVERHEAD, "ms", overhead)
        result.add(RELEASE, "ms", release)
        result.add(WITH_TRIGGER, "jobs/s", with_trigger)
        result.add(WITHOUT_TRIGGER, "jobs/s", without_trigger)
        if with_trigger and without_trigger:
            result.add(
                TRIGGER_COST, "x", ratio(Spread.of(with_trigger), Spread.of(without_trigger))
            )


async def _plain_and_workflow(
    ctx: RunContext, dsn: str, steps: int, rep: int
) -> tuple[float, float, float]:
    """(plain seconds, workflow seconds, fan-in release seconds) on one running fleet."""
    config = ctx.config
    connection = await asyncpg.connect(dsn)
    try:
        with ctx.processes(NUMBER, f"{rep}wf") as processes:
            workers = [
                processes.start_worker(
                    dsn, f"worker{n}", batch_size=config.batch_size, concurrency=config.concurrency
                )
                for n in range(config.workers)
            ]
            for worker in workers:
                await processes.wait_ready(worker)
            async with in_app(dsn) as app:
                timings: dict[str, float] = {}
                for kind in ("plain", "workflow") if rep % 2 == 0 else ("workflow", "plain"):
                    since = await db_now(connection)
                    async with app.sessions() as session, session.begin():
                        if kind == "plain":
                            specs = [noop_spec(f"s10p{rep}-{n}") for n in range(steps)]
                            await enqueue_many_in_session(session, specs, app.settings)
                        else:
                            await enqueue_workflow_in_session(
                                session, _fan_out_in(steps, rep), app.settings
                            )
                    await _wait_done(connection, workers, steps, since)
                    timings[kind] = await _trigger_to_last_finish(connection, since)
            processes.stop(*workers)
        release = await connection.fetchval(
            """SELECT extract(epoch FROM s.started_at - (
                   SELECT max(p.finished_at) FROM dl_jobs p WHERE p.step_name LIKE 'part-%'))
               FROM dl_jobs s WHERE s.step_name = 'sink'"""
        )
        return timings["plain"], timings["workflow"], float(release)
    finally:
        await connection.close()


def _fan_out_in(steps: int, rep: int) -> WorkflowCreate:
    """1 root -> steps - 2 parallel -> 1 sink, noop steps with lock_keys of their own."""

    def step(name: str, *parents: str) -> dict[str, object]:
        job = {"queue": QUEUE, "task": TASK, "lock_key": f"s10w{rep}-{name}", "args": {}}
        return {"name": name, "job": job, "depends_on": list(parents)}

    middle = [f"part-{n}" for n in range(steps - 2)]
    body = {
        "name": f"bench-{rep}",
        "steps": [step("root"), *(step(name, "root") for name in middle), step("sink", *middle)],
    }
    return msgspec.convert(body, WorkflowCreate)


async def _wait_done(
    connection: asyncpg.Connection, workers: list[Managed], jobs: int, since: datetime
) -> None:
    """Until the `jobs` jobs created since `since` all succeeded."""
    deadline = time.monotonic() + drain_timeout(jobs)
    while True:
        done = await connection.fetchval(
            "SELECT count(*) FROM dl_jobs WHERE created_at >= $1 AND status = 'succeeded'", since
        )
        if done == jobs:
            return
        Processes.check_alive(*workers)
        if time.monotonic() > deadline:
            raise DrainIncomplete(f"{done} of {jobs} jobs succeeded in {drain_timeout(jobs):.0f}s")
        await asyncio.sleep(POLL_SEC)


async def _trigger_to_last_finish(connection: asyncpg.Connection, since: datetime) -> float:
    """From the creating transaction's start to the last finish, in seconds."""
    value = await connection.fetchval(
        "SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM dl_jobs"
        " WHERE created_at >= $1",
        since,
    )
    return float(value)
