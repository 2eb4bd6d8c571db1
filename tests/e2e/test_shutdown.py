"""SIGTERM drains: short jobs finish, long ones go back to the queue without spending an attempt."""

from __future__ import annotations

import signal
import time

from tests.support.jobs_db import JobsDb
from tests.support.logs import log_records
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet


async def test_sigterm_finishes_short_jobs_and_requeues_long_ones(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    worker = await fleet.start_ready("draining", env={"DL_SHUTDOWN_TIMEOUT_SEC": "1"})
    long_job = await jobs_db.enqueue("noop", {"steps": 12, "sleep": 0.25})
    short_job = await jobs_db.enqueue("noop", {"steps": 3, "sleep": 0.2})
    for job_id in (long_job, short_job):
        await jobs_db.wait_status(job_id, "running", timeout=15, diagnostics=fleet.diagnostics)

    worker.terminate()
    assert await worker.wait_exit(timeout=15) == 0, worker.tail()

    short = await jobs_db.job(short_job)
    assert short["status"] == "succeeded"
    assert short["progress"] == {"processed": 3, "total": 3}
    assert await jobs_db.event_names(short_job) == ["queued", "started", "succeeded"]

    long = await jobs_db.job(long_job)
    assert long["status"] == "queued"
    assert long["attempt"] == 0, "an interrupted attempt is given back"
    assert long["lease_expires_at"] is None
    events = await jobs_db.events(long_job)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("queued", 0),
        ("started", 1),
        ("interrupted", 0),
    ]
    assert await jobs_db.scalar("SELECT count(*) FROM dl_jobs WHERE status = 'running'") == 0
    # The requeued job has a dispatch waiting for the next worker.
    dispatch = await jobs_db.pgqueuer_rows(long["pgq_job_id"])
    assert [row["status"] for row in dispatch] == ["queued"]

    await fleet.start_ready("next")
    done = await jobs_db.wait_status(
        long_job, "succeeded", timeout=20, diagnostics=fleet.diagnostics
    )
    assert done["attempt"] == 1
    assert done["worker_id"] == "next"
    assert done["progress"] == {"processed": 12, "total": 12}


async def test_sigint_drain_says_a_second_one_stops_now_and_it_does(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    worker = await fleet.start_ready("ctrl-c", env={"DL_SHUTDOWN_TIMEOUT_SEC": "60"})
    job_id = await jobs_db.enqueue("noop", {"steps": 120, "sleep": 0.25})
    await jobs_db.wait_status(job_id, "running", timeout=15, diagnostics=fleet.diagnostics)

    worker.send(signal.SIGINT)
    await wait_until(
        lambda: "draining 1 running job(s)" in worker.log(),
        timeout=10,
        what="the drain line",
        diagnostics=worker.tail,
    )
    [line] = [r["event"] for r in log_records(worker.log()) if "draining" in r["event"]]
    assert "for up to 60 s" in line
    assert "press Ctrl-C again" in line
    assert "to stop them now" in line

    began = time.monotonic()
    worker.send(signal.SIGINT)
    assert await worker.wait_exit(timeout=15) == 0, worker.tail()

    assert time.monotonic() - began < 15, "the second Ctrl-C did not wait out the 60 s drain"
    job = await jobs_db.job(job_id)
    assert (job["status"], job["attempt"]) == ("queued", 0)
