"""Pausing a queue with real workers: nothing starts, nothing churns, running jobs finish."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from app.db.engine import create_session_factory
from app.db.pgqueuer_tables import parked_entrypoint
from app.jobs.queue_service import QueueService
from tests.support.jobs_db import JobsDb
from tests.support.waiting import wait_until
from tests.support.workers import PGQ_ARGS, WorkerFleet

QUEUE = "etl.default"
SIDE = "etl.side"
# Long enough that a worker woken only by its poll would miss the test's deadline: a
# prompt start after a resume proves the resume's notification woke it.
SLOW_POLL_ARGS = (*PGQ_ARGS[:2], "--dequeue-timeout", "60")


def queue_service(jobs_db: JobsDb) -> QueueService:
    return QueueService(create_session_factory(jobs_db.engine), jobs_db.settings)


async def picks_of(jobs_db: JobsDb, job_ids: list[uuid.UUID]) -> int:
    """How often pgqueuer picked any dispatch these jobs ever had."""
    value: int = await jobs_db.scalar(
        "SELECT count(*) FROM pgqueuer_log l WHERE l.status = 'picked' AND l.job_id IN"
        " (SELECT q.job_id FROM pgqueuer_log q WHERE q.status = 'queued'"
        "  AND q.job_id IN (SELECT pgq_job_id FROM dl_jobs WHERE job_id = ANY(:ids)))",
        ids=job_ids,
    )
    return value


async def test_pause_holds_jobs_without_churn_until_resume(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready(queues={QUEUE: 1, SIDE: 1})
    queues = queue_service(jobs_db)
    running = await jobs_db.enqueue("noop", {"steps": 8, "sleep": 0.25}, queue=QUEUE)
    await jobs_db.wait_status(running, "running", timeout=20, diagnostics=fleet.diagnostics)
    # Waits behind the running job (the queue's one slot), then is caught by the pause.
    waiting_before = await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0}, queue=QUEUE)

    view = await queues.pause(QUEUE)

    assert view.paused
    assert view.running == 1
    assert view.queued == 1
    waiting_after = [
        await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0}, queue=QUEUE) for _ in range(4)
    ]
    waiting = [waiting_before, *waiting_after]
    done = await jobs_db.wait_status(
        running, "succeeded", timeout=30, diagnostics=fleet.diagnostics
    )
    assert done["attempt"] == 1, "the running job finished normally"
    # The freed slot and a side job due a few seconds later give the worker every chance
    # to dequeue (and a late wake-up) before we look.
    side_at = await jobs_db.now() + timedelta(seconds=3)
    side = await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0}, queue=SIDE, available_at=side_at)
    await jobs_db.wait_status(side, "succeeded", timeout=30, diagnostics=fleet.diagnostics)

    for job_id in waiting:
        row = await jobs_db.job(job_id)
        assert (row["status"], row["attempt"], row["started_at"]) == ("queued", 0, None)
        assert await jobs_db.event_names(job_id) == ["queued"]
        dispatch = await jobs_db.fetch(
            "SELECT status::text, entrypoint FROM pgqueuer WHERE id = :id", id=row["pgq_job_id"]
        )
        assert dispatch == [{"status": "queued", "entrypoint": parked_entrypoint(QUEUE)}]
    assert await picks_of(jobs_db, waiting) == 0, "no pick/postpone churn while paused"

    resumed_at: datetime = await jobs_db.now()
    view = await queues.resume(QUEUE)

    assert not view.paused
    assert view.queued == 5
    for job_id in waiting:
        row = await jobs_db.wait_status(
            job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics
        )
        assert row["started_at"] >= resumed_at
        assert row["attempt"] == 1
        assert await jobs_db.event_names(job_id) == ["queued", "started", "succeeded"]


async def test_resume_wakes_an_idle_worker_at_once(jobs_db: JobsDb, fleet: WorkerFleet) -> None:
    """pgqueuer's trigger does not notify on UPDATE: without the resume's own notification
    the worker below would sleep through its 60 s poll."""
    queues = queue_service(jobs_db)
    await queues.pause(QUEUE)
    waiting = [
        await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0}, queue=QUEUE) for _ in range(3)
    ]
    fleet.pgq_args = SLOW_POLL_ARGS
    await fleet.start_ready(queues={QUEUE: 2})

    async def worker_idle() -> bool:
        # The last thing pgqueuer asks before it waits for a notification or its poll
        # (whether any job of its queues is queued at all, due or not).
        return bool(
            await jobs_db.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'idle' AND query LIKE '%AS queued_work%'"
                " AND query NOT LIKE '%execute_after%'"
            )
        )

    await wait_until(
        worker_idle, timeout=20, what="the worker to wait", diagnostics=fleet.diagnostics
    )

    await queues.resume(QUEUE)

    for job_id in waiting:
        await jobs_db.wait_status(job_id, "succeeded", timeout=20, diagnostics=fleet.diagnostics)


async def test_pause_that_commits_after_the_pick_parks_the_job_until_resume(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    """The start statement sees the pause: no attempt, event queue_paused, parked dispatch."""
    await fleet.start_ready(queues={QUEUE: 2})
    due_at = await jobs_db.now() + timedelta(seconds=1)
    job_id = await jobs_db.enqueue(
        "noop", {"steps": 1, "sleep": 0}, queue=QUEUE, available_at=due_at
    )
    # The pause as its start statement will see it, without the parking its transaction
    # would also do: exactly the state of a dispatch picked just before the pause committed.
    await jobs_db.execute("INSERT INTO dl_queues (queue, paused) VALUES (:q, true)", q=QUEUE)

    [event] = await jobs_db.wait_event(
        job_id, "queue_paused", timeout=20, diagnostics=fleet.diagnostics
    )

    assert event["attempt"] == 0
    assert event["details"]["queue"] == QUEUE
    assert event["details"]["worker_id"] == "w1"
    row = await jobs_db.job(job_id)
    assert (row["status"], row["attempt"]) == ("queued", 0)
    dispatch = await jobs_db.fetch(
        "SELECT entrypoint FROM pgqueuer WHERE id = :id", id=row["pgq_job_id"]
    )
    assert dispatch == [{"entrypoint": parked_entrypoint(QUEUE)}]

    await queue_service(jobs_db).resume(QUEUE)

    done = await jobs_db.wait_status(job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 1
    assert await jobs_db.event_names(job_id) == ["queued", "queue_paused", "started", "succeeded"]
