"""A finished attempt keeps its lease until its end is written (invariant 1: run once).

The body may end while its finish write cannot land (the database restarting, a pooler
queueing the worker's connection). The worker keeps heartbeating meanwhile: otherwise the
lease runs out, the reaper takes the job back, and a body that already ran to its end runs
a second time.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

LEASE_TTL_SEC = 4  # FAST_ENV beats every 0.5 s (8 beats of slack), the reaper looks every 0.5 s
HELD_FOR_SEC = 3 * LEASE_TTL_SEC


async def test_a_finish_write_held_past_the_lease_keeps_the_lease_and_runs_once(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    await fleet.start_ready()
    job_id = await jobs_db.enqueue(
        "test.record", {"steps": 1, "sleep": 1}, lease_ttl_sec=LEASE_TTL_SEC, max_attempts=3
    )
    await jobs_db.wait_status(job_id, "running", timeout=20, diagnostics=fleet.diagnostics)

    async def body_finished() -> bool:
        return bool(
            await jobs_db.scalar(
                "SELECT count(*) FROM e2e_runs WHERE job_id = :id AND finished_at IS NOT NULL",
                id=job_id,
            )
        )

    # A finish logs its event in the same statement: holding the events table holds the
    # write back, while the heartbeat (one UPDATE of the job's row) still gets through.
    async with jobs_db.engine.connect() as holder:
        await holder.execute(text("LOCK TABLE dl_job_events IN SHARE ROW EXCLUSIVE MODE"))
        await wait_until(body_finished, timeout=20, what="the body to run to its end")
        await asyncio.sleep(HELD_FOR_SEC)  # the write held back for three leases
        await holder.rollback()

    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 1
    assert await jobs_db.event_names(job_id) == ["queued", "started", "succeeded"]
    runs = await jobs_db.scalar("SELECT count(*) FROM e2e_runs WHERE job_id = :id", id=job_id)
    assert runs == 1, "the body ran once"
