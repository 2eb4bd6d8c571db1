"""Retrying a finished job (JobService.retry, behind POST /jobs/{id}/retry) on real workers."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.support.jobs_db import JobsDb
from tests.support.logs import log_records
from tests.support.workers import WorkerFleet


def fails_until(attempt: int) -> dict[str, object]:
    """noop args that fail every attempt up to and including `attempt`, then succeed."""
    return {"steps": 1, "sleep": 0, "fail_at_step": 0, "fail_attempts": attempt}


async def test_retry_failed_job_runs_again_and_succeeds(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready("alpha")
    job_id = await jobs_db.enqueue("noop", fails_until(2), max_attempts=2)
    await jobs_db.wait_status(job_id, "failed", timeout=20, diagnostics=fleet.diagnostics)

    view = await jobs_db.service.retry(job_id)

    assert (view.status, view.attempt, view.max_attempts) == ("queued", 2, 4)
    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 3
    assert done["error"] is None
    assert done["progress"] == {"processed": 1, "total": 1}
    events = await jobs_db.events(job_id)
    assert [(e["event"], e["attempt"]) for e in events][-5:] == [
        ("started", 2),
        ("failed", 2),
        ("retried", 2),
        ("started", 3),
        ("succeeded", 3),
    ]
    assert events[-3]["details"] == {
        "previous_status": "failed",
        "max_attempts_before": 2,
        "max_attempts": 4,
    }
    assert events[-2]["details"] == {"worker_id": "alpha"}


async def test_retry_gives_the_original_budget_each_time(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready()
    job_id = await jobs_db.enqueue("noop", fails_until(4), max_attempts=2)
    await jobs_db.wait_status(job_id, "failed", timeout=20, diagnostics=fleet.diagnostics)

    await jobs_db.service.retry(job_id)  # attempts 3 and 4, both failing
    again = await jobs_db.wait_status(job_id, "failed", timeout=30, diagnostics=fleet.diagnostics)
    assert (again["attempt"], again["max_attempts"]) == (4, 4)
    view = await jobs_db.service.retry(job_id)  # attempt 5 succeeds

    assert view.max_attempts == 6
    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 5
    starts = [e["attempt"] for e in await jobs_db.events(job_id) if e["event"] == "started"]
    assert starts == [1, 2, 3, 4, 5]  # no attempt number is ever used twice


async def test_retry_canceled_queued_job_runs_on_a_worker(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    job_id = await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0}, max_attempts=3)
    canceled = await jobs_db.service.cancel(job_id)
    assert canceled.status == "canceled"

    view = await jobs_db.service.retry(job_id)
    await fleet.start_ready()

    assert (view.status, view.attempt, view.max_attempts) == ("queued", 0, 3)
    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 1
    assert done["cancel_requested"] is False
    assert [e["event"] for e in await jobs_db.events(job_id)] == [
        "queued",
        "canceled",
        "retried",
        "started",
        "succeeded",
    ]


async def test_retry_failed_attempt_log_line_names_error_and_next_retry(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    worker = await fleet.start_ready("alpha")
    job_id = await jobs_db.enqueue("noop", fails_until(1), max_attempts=2)
    done = await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 2

    [failed] = [
        r
        for r in log_records(worker.log())
        if r.get("job_id") == str(job_id) and r["event"].startswith("attempt ended: failed")
    ]

    error = "NoopFailure: noop failed on purpose at step 0"
    assert failed["level"] == "warning"
    assert failed["error"] == error
    retry_at = datetime.fromisoformat(failed["retry_at"])
    assert failed["event"] == (
        f"attempt ended: failed: job {job_id} attempt 1/2: {error}; retry at {retry_at.isoformat()}"
    )
    # DL_RETRY_BACKOFF_SEC=1 without jitter: the retry is due about a second after the failure.
    logged_at = datetime.fromisoformat(failed["timestamp"])
    assert timedelta(0) <= retry_at - logged_at.replace(microsecond=0) <= timedelta(seconds=3)
