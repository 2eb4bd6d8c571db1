"""Progress is saved sooner than the heartbeat, so people watching a job see it move."""

from __future__ import annotations

from tests.support.jobs_db import JobsDb
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet


async def test_progress_is_saved_between_heartbeats(jobs_db: JobsDb, fleet: WorkerFleet) -> None:
    # A heartbeat far longer than the job: only the progress cadence can save progress.
    await fleet.start_ready(env={"DL_HEARTBEAT_SEC": "30", "DL_PROGRESS_SEC": "0.2"})
    job_id = await jobs_db.enqueue("noop", {"steps": 12, "sleep": 0.25})
    seen: set[int] = set()

    async def moved() -> bool:
        row = await jobs_db.job(job_id)
        if row["status"] == "running" and row["progress"]:
            seen.add(row["progress"]["processed"])
        return len(seen) >= 3

    await wait_until(moved, timeout=20, interval=0.05, diagnostics=fleet.diagnostics)
    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["progress"] == {"processed": 12, "total": 12}
    assert max(seen) < 12, "progress moved while the job was still running"
