"""Coalescing triggers with a real worker: a refresh asked for while one runs still runs after
it, and a job joined in an open transaction runs only after that transaction commits.

Times come from the database clock: the jobs' started_at and finished_at, and
clock_timestamp() read inside the joining transaction.
"""

from __future__ import annotations

import asyncpg

from tests.support.jobs_db import JobsDb
from tests.support.workers import WorkerFleet

QUEUE = "etl.default"
LOCK_KEY = "table:sales"
# A job held back (by its busy lock_key, or by an open trigger) is tried again soon.
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.2"}


async def test_a_refresh_asked_for_while_one_runs_runs_after_it(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready("w1", queues={QUEUE: 2}, env=ENV)
    # Long enough never to end by itself: it is canceled once the later triggers are in.
    running = await jobs_db.enqueue(
        args={"steps": 600, "sleep": 0.1}, lock_key=LOCK_KEY, coalescing=True
    )
    await jobs_db.wait_status(running, "running", timeout=30, diagnostics=fleet.diagnostics)

    later = await jobs_db.enqueue(args={"steps": 1}, lock_key=LOCK_KEY, coalescing=True)
    joined = await jobs_db.enqueue(args={"steps": 1}, lock_key=LOCK_KEY, coalescing=True)
    assert (await jobs_db.job(running))["status"] == "running"
    await jobs_db.service.cancel(running)

    first = await jobs_db.wait_status(
        running, "canceled", timeout=30, diagnostics=fleet.diagnostics
    )
    after = await jobs_db.wait_status(later, "succeeded", timeout=30, diagnostics=fleet.diagnostics)
    assert later != running
    assert joined == later
    assert after["started_at"] >= first["finished_at"]
    names = await jobs_db.event_names(later)
    # lock_busy events come in between as the worker finds the key busy.
    assert (names[0], names.count("coalesced")) == ("queued", 1)
    assert names[-2:] == ["started", "succeeded"]
    assert await jobs_db.scalar("SELECT count(*) FROM dl_jobs") == 2


async def test_a_job_joined_in_an_open_transaction_runs_after_it_commits(
    jobs_db: JobsDb, fleet: WorkerFleet, database_dsn: str
) -> None:
    queued = await jobs_db.enqueue(args={"steps": 1}, lock_key=LOCK_KEY, coalescing=True)
    caller = await asyncpg.connect(database_dsn)
    try:
        await caller.execute("BEGIN")
        await caller.execute("CREATE TABLE sales (id int); INSERT INTO sales VALUES (1)")
        row = await caller.fetchrow(
            "SELECT * FROM dl_enqueue(queue => $1, task => 'noop', lock_key => $2,"
            " args => '{\"steps\": 1}', coalescing => true)",
            QUEUE,
            LOCK_KEY,
        )
        assert (row["job_id"], row["coalesced"]) == (queued, True)

        await fleet.start_ready("w1", queues={QUEUE: 1}, env=ENV)
        await jobs_db.wait_event(queued, "trigger_open", timeout=30, diagnostics=fleet.diagnostics)
        assert (await jobs_db.job(queued))["status"] == "queued"
        before_commit = await caller.fetchval("SELECT clock_timestamp()")
        await caller.execute("COMMIT")
    finally:
        await caller.close()

    job = await jobs_db.wait_status(queued, "succeeded", timeout=30, diagnostics=fleet.diagnostics)
    assert job["started_at"] > before_commit
    assert job["attempt"] == 1, "waiting for the trigger used no attempt"
    names = await jobs_db.event_names(queued)
    assert names[-2:] == ["started", "succeeded"]
    assert "trigger_open" in names
