"""Invariant 7: a canceled queued job never starts; a running one stops at its next checkpoint."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

from tests.support.jobs_db import JobsDb
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet


async def test_canceled_queued_job_never_starts(jobs_db: JobsDb, fleet: WorkerFleet) -> None:
    await fleet.start_ready()
    available_at = await jobs_db.now() + timedelta(seconds=1.5)
    job_id = await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0}, available_at=available_at)
    # A job due a little later: once it has run, the canceled one had every chance to start.
    sentinel = await jobs_db.enqueue(
        "noop", {"steps": 1, "sleep": 0}, available_at=available_at + timedelta(seconds=0.5)
    )
    dispatch = (await jobs_db.job(job_id))["pgq_job_id"]
    assert await jobs_db.pgqueuer_rows(dispatch), "a queued job has its pgqueuer row"

    view = await jobs_db.service.cancel(job_id)
    assert view.status == "canceled"
    assert await jobs_db.pgqueuer_rows(dispatch) == [], "the dispatch is withdrawn at once"

    await jobs_db.wait_status(sentinel, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    row = await jobs_db.job(job_id)
    assert row["status"] == "canceled"
    assert row["attempt"] == 0
    assert row["started_at"] is None
    assert row["worker_id"] is None
    assert row["finished_at"] is not None
    assert await jobs_db.event_names(job_id) == ["queued", "canceled"]

    async def no_dispatch_left() -> bool:  # pgqueuer logs finished rows in batches
        return await jobs_db.pgqueuer_rows() == []

    await wait_until(no_dispatch_left, timeout=10, what="pgqueuer to drain")
    assert await jobs_db.event_names(job_id) == ["queued", "canceled"]


async def test_canceled_running_job_stops_within_a_heartbeat(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready()
    job_id = await jobs_db.enqueue("noop", {"steps": 40, "sleep": 0.25})

    async def running_with_progress() -> bool:
        row = await jobs_db.job(job_id)
        return row["status"] == "running" and bool(row["progress"])

    await wait_until(
        running_with_progress, timeout=15, what="first progress", diagnostics=fleet.diagnostics
    )
    asked = time.monotonic()
    view = await jobs_db.service.cancel(job_id)
    assert view.status == "running"
    assert view.cancel_requested is True

    done = await jobs_db.wait_status(job_id, "canceled", timeout=10, diagnostics=fleet.diagnostics)
    elapsed = time.monotonic() - asked
    # DL_HEARTBEAT_SEC is 0.5: the flag is read within one beat, the pipeline stops at once.
    assert elapsed < 0.5 + 0.5, f"cancel took {elapsed:.2f}s"
    assert done["attempt"] == 1
    assert done["finished_at"] is not None
    assert done["lease_expires_at"] is None
    assert done["progress"]["processed"] < 40
    events = await jobs_db.events(job_id)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("queued", 0),
        ("started", 1),
        ("cancel_requested", 1),
        ("canceled", 1),
    ]


async def test_cancel_of_a_job_whose_worker_died_ends_canceled(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    """A cancel requested while the worker was dead is honoured, not retried forever."""
    for name in ("w1", "w2"):
        await fleet.start_ready(name)
    job_id = await jobs_db.enqueue("noop", {"steps": 40, "sleep": 0.25}, lease_ttl_sec=2)
    running = await jobs_db.wait_status(
        job_id, "running", timeout=15, diagnostics=fleet.diagnostics
    )
    victim = fleet.by_id(running["worker_id"])
    (survivor,) = [worker for worker in fleet.workers if worker is not victim]
    victim.kill()
    await victim.wait_exit(timeout=10)

    view = await jobs_db.service.cancel(job_id)
    assert view.status == "running"
    assert view.cancel_requested is True

    done = await jobs_db.wait_status(job_id, "canceled", timeout=15, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 1
    assert done["finished_at"] is not None
    events = await jobs_db.events(job_id)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("queued", 0),
        ("started", 1),
        ("cancel_requested", 1),
        ("canceled", 1),
    ], "a canceled job must not start again"
    # The reaper found the lease expired and ended the job instead of requeueing it.
    assert events[-1]["details"] == {
        "worker_id": victim.worker_id,
        "reaped_by": survivor.worker_id,
        "instead_of": "lease_expired",
    }
    assert done["error"] == "lease expired on attempt 1"
    assert done["pgq_job_id"] == running["pgq_job_id"], "no new dispatch for a canceled job"
    assert victim.returncode == -signal.SIGKILL
