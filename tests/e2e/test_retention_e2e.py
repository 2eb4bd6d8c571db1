"""A real worker's leader prunes finished jobs past DL_RETENTION_DAYS and keeps live ones."""

from __future__ import annotations

from datetime import timedelta

from tests.support.jobs_db import JobsDb
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

RETENTION_ENV = {"DL_RETENTION_DAYS": "1", "DL_RETENTION_PERIOD_SEC": "0.5"}


async def test_retention_on_the_leader_deletes_an_old_finished_job_and_keeps_a_queued_one(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready(env=RETENTION_ENV)
    finished = await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0})
    await jobs_db.wait_status(finished, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    # Not due for an hour, so it stays queued; created two days ago.
    waiting = await jobs_db.enqueue(
        "noop", {}, available_at=await jobs_db.now() + timedelta(hours=1)
    )
    await jobs_db.execute(
        "UPDATE dl_jobs SET created_at = created_at - interval '2 days',"
        " finished_at = finished_at - interval '2 days'"
    )

    async def pruned() -> bool:
        count = await jobs_db.scalar(
            "SELECT count(*) FROM dl_job_events WHERE job_id = :id", id=finished
        )
        gone = await jobs_db.scalar(
            "SELECT count(*) = 0 FROM dl_jobs WHERE job_id = :id", id=finished
        )
        return bool(gone and count == 0)

    await wait_until(
        pruned, timeout=20, what="the old job to be pruned", diagnostics=fleet.diagnostics
    )
    assert (await jobs_db.job(waiting))["status"] == "queued"
    assert await jobs_db.event_names(waiting) == ["queued"]
    await wait_until(  # logged just after the commit
        lambda: "retention: deleted jobs=1 events=3" in fleet.diagnostics(),
        timeout=5,
        what="the retention log line",
        diagnostics=fleet.diagnostics,
    )
