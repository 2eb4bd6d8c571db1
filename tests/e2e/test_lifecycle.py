"""A job's life through real `pgq run` workers: success, retries, failure, timing and order."""

from __future__ import annotations

import uuid
from datetime import timedelta

from tests.support.jobs_db import JobsDb, seconds
from tests.support.workers import WorkerFleet

NOOP_FAILURE = "NoopFailure: noop failed on purpose at step 0"


async def test_noop_job_goes_queued_running_succeeded(jobs_db: JobsDb, fleet: WorkerFleet) -> None:
    job_id = await jobs_db.enqueue("noop", {"steps": 4, "sleep": 0.3})
    queued = await jobs_db.job(job_id)
    assert (queued["status"], queued["attempt"], queued["worker_id"]) == ("queued", 0, None)
    assert await jobs_db.event_names(job_id) == ["queued"]

    await fleet.start_ready("alpha")
    running = await jobs_db.wait_status(
        job_id, "running", timeout=15, diagnostics=fleet.diagnostics
    )
    assert running["attempt"] == 1
    assert running["worker_id"] == "alpha"
    assert running["lease_expires_at"] is not None

    done = await jobs_db.wait_status(job_id, "succeeded", timeout=15, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 1
    assert done["worker_id"] == "alpha"
    assert done["progress"] == {"processed": 4, "total": 4}
    assert done["error"] is None
    assert done["lease_expires_at"] is None
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    assert done["finished_at"] - done["started_at"] >= timedelta(seconds=1.2)

    events = await jobs_db.events(job_id)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("queued", 0),
        ("started", 1),
        ("succeeded", 1),
    ]
    assert events[1]["details"] == {"worker_id": "alpha"}


async def test_failed_attempt_is_retried_after_backoff_then_succeeds(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready()
    job_id = await jobs_db.enqueue(
        "noop",
        {"steps": 1, "sleep": 0, "fail_at_step": 0, "fail_attempts": 1},
        max_attempts=3,
    )
    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 2
    assert done["error"] is None
    assert done["progress"] == {"processed": 1, "total": 1}

    events = await jobs_db.events(job_id)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("queued", 0),
        ("started", 1),
        ("retry_scheduled", 1),
        ("started", 2),
        ("succeeded", 2),
    ]
    retry = events[2]
    assert retry["details"]["error"] == NOOP_FAILURE
    assert "Traceback" in retry["details"]["traceback"]
    assert "NoopFailure" in retry["details"]["traceback"]
    # DL_RETRY_BACKOFF_SEC=1 x attempt 1, no jitter.
    assert seconds(events[3]["at"] - retry["at"]) >= 0.95


async def test_job_fails_after_max_attempts_with_its_error_stored(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready()
    job_id = await jobs_db.enqueue(
        "noop", {"steps": 1, "sleep": 0, "fail_at_step": 0}, max_attempts=2
    )
    done = await jobs_db.wait_status(job_id, "failed", timeout=20, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 2
    assert done["error"] == NOOP_FAILURE
    assert done["finished_at"] is not None
    assert done["lease_expires_at"] is None

    events = await jobs_db.events(job_id)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("queued", 0),
        ("started", 1),
        ("retry_scheduled", 1),
        ("started", 2),
        ("failed", 2),
    ]
    failed = events[-1]
    assert failed["details"]["error"] == NOOP_FAILURE
    assert "NoopFailure" in failed["details"]["traceback"]
    assert seconds(events[3]["at"] - events[2]["at"]) >= 0.95


async def test_job_does_not_start_before_available_at(jobs_db: JobsDb, fleet: WorkerFleet) -> None:
    await fleet.start_ready()
    available_at = await jobs_db.now() + timedelta(seconds=2)
    job_id = await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0}, available_at=available_at)
    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["started_at"] >= available_at
    started = [e for e in await jobs_db.events(job_id) if e["event"] == "started"]
    assert len(started) == 1
    assert started[0]["at"] >= available_at


async def test_lower_priority_number_runs_first(jobs_db: JobsDb, fleet: WorkerFleet) -> None:
    await fleet.start_ready(queues={"etl.default": 1})
    blocker = await jobs_db.enqueue("noop", {"steps": 2, "sleep": 0.5})
    await jobs_db.wait_status(blocker, "running", timeout=15, diagnostics=fleet.diagnostics)

    # While the only slot is busy, queue jobs out of priority order (two share priority 10).
    by_label: dict[str, uuid.UUID] = {}
    for label, priority in [("p50", 50), ("p10a", 10), ("p30", 30), ("p10b", 10), ("p20", 20)]:
        by_label[label] = await jobs_db.enqueue(
            "noop", {"steps": 1, "sleep": 0.05}, priority=priority
        )
    blocker_row = await jobs_db.job(blocker)
    assert blocker_row["status"] == "running", "the blocker must still hold the slot"

    for job_id in by_label.values():
        await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    rows = await jobs_db.fetch(
        "SELECT job_id, started_at FROM dl_jobs WHERE job_id <> :blocker ORDER BY started_at",
        blocker=blocker,
    )
    label_of = {job_id: label for label, job_id in by_label.items()}
    assert [label_of[row["job_id"]] for row in rows] == ["p10a", "p10b", "p20", "p30", "p50"]
    blocker_done = await jobs_db.job(blocker)
    assert blocker_done["status"] == "succeeded"
    assert all(row["started_at"] >= blocker_done["finished_at"] for row in rows)
