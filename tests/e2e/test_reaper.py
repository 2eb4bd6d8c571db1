"""Invariants 5 and 8: the reaper gives a queued job that lost its pgqueuer row a new one."""

from __future__ import annotations

from datetime import timedelta

from tests.support.jobs_db import JobsDb
from tests.support.workers import WorkerFleet


async def test_reaper_redispatches_a_queued_job_whose_pgqueuer_row_vanished(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready()
    available_at = await jobs_db.now() + timedelta(seconds=2)
    job_id = await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0}, available_at=available_at)
    lost_dispatch = (await jobs_db.job(job_id))["pgq_job_id"]
    await jobs_db.execute("DELETE FROM pgqueuer")

    redispatched = await jobs_db.wait_event(
        job_id, "redispatched", timeout=10, diagnostics=fleet.diagnostics
    )
    assert len(redispatched) == 1
    row = await jobs_db.job(job_id)
    assert row["status"] == "queued"
    assert row["pgq_job_id"] != lost_dispatch
    assert await jobs_db.pgqueuer_rows(row["pgq_job_id"]), "the new dispatch exists"

    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 1
    # The new dispatch kept the job's schedule.
    assert done["started_at"] >= available_at
    names = await jobs_db.event_names(job_id)
    assert names == ["queued", "redispatched", "started", "succeeded"]
