"""The wake gate (app.jobs.wake_gate): a new job wakes the workers it needs, not the whole fleet.

The workers here poll only every POLL_SEC, far beyond every wait of these tests, so a job
picked in time was picked because a notice woke a worker, not by the safety-net poll.
"""

from __future__ import annotations

from pathlib import Path

from app.jobs.wake_gate import rank_of
from tests.support.jobs_db import JobsDb
from tests.support.private_postgres import private_postgres
from tests.support.workers import RESTART_ARGS, WorkerFleet, worker_fleet

POLL_SEC = 120
SLOW_POLL_ARGS = ("--heartbeat-timeout", "2", "--dequeue-timeout", str(POLL_SEC), *RESTART_ARGS)
# Far below POLL_SEC: only a wake-up can meet it. Generous: these machines are shared.
PICKED_WITHIN_SEC = 30.0
QUICK = {"steps": 1, "sleep": 0}


async def _start(fleet: WorkerFleet, *names: str, queues: dict[str, int] | None = None) -> None:
    fleet.pgq_args = SLOW_POLL_ARGS
    for name in names:
        await fleet.start_ready(name, queues=queues)


async def test_wake_gate_lone_job_on_an_idle_fleet_is_picked(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await _start(fleet, "w1", "w2", "w3", "w4")
    job_id = await jobs_db.enqueue("noop", QUICK)
    await jobs_db.wait_status(
        job_id, "succeeded", timeout=PICKED_WITHIN_SEC, diagnostics=fleet.diagnostics
    )


async def test_wake_gate_wakes_workers_of_a_queue_without_a_concurrency_limit(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    # Concurrency 0 sets no limit: such a queue always has a free slot on every worker.
    await _start(fleet, "w1", "w2", queues={"etl.default": 0})
    for _ in range(3):  # several notices, so each worker ranks first for some
        job_id = await jobs_db.enqueue("noop", QUICK)
        await jobs_db.wait_status(
            job_id, "succeeded", timeout=PICKED_WITHIN_SEC, diagnostics=fleet.diagnostics
        )


async def test_wake_gate_job_of_a_queue_one_worker_serves_is_picked(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await _start(fleet, "w1", "w2", "w3")
    await _start(fleet, "rare", queues={"etl.default": 2, "etl.rare": 1})
    for _ in range(3):  # several notices, so the rare queue's ranks are met more than once
        job_id = await jobs_db.enqueue("noop", QUICK, queue="etl.rare")
        done = await jobs_db.wait_status(
            job_id, "succeeded", timeout=PICKED_WITHIN_SEC, diagnostics=fleet.diagnostics
        )
        assert done["worker_id"] == "rare"


async def _next_dispatch_id(jobs_db: JobsDb) -> int:
    """The id pgqueuer's sequence hands out next (nothing else enqueues meanwhile)."""
    # last_value is NULL until the sequence first hands out a value (then it starts at 1).
    return int(
        await jobs_db.scalar(
            "SELECT coalesce(last_value, 0) + 1 FROM pg_sequences"
            " WHERE sequencename = 'pgqueuer_id_seq'"
        )
    )


async def test_wake_gate_busy_rank_zero_worker_leaves_the_job_to_another(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    # alpha's one slot is taken by a long job; beta has room (pgqueuer counts a queue's
    # picked jobs across the fleet, so beta's limit must be above the one running job).
    await _start(fleet, "alpha", queues={"etl.default": 1})
    long_job = await jobs_db.enqueue("noop", {"steps": 60, "sleep": 1})
    await jobs_db.wait_status(long_job, "running", timeout=30, diagnostics=fleet.diagnostics)
    await _start(fleet, "beta", queues={"etl.default": 2})
    # Jobs that beta ranks first are run until the next dispatch ranks alpha first.
    for _ in range(20):
        next_id = await _next_dispatch_id(jobs_db)
        if rank_of(f"{next_id}/etl.default", "alpha", ["alpha", "beta"]) == 0:
            break
        filler = await jobs_db.enqueue("noop", QUICK)
        await jobs_db.wait_status(
            filler, "succeeded", timeout=PICKED_WITHIN_SEC, diagnostics=fleet.diagnostics
        )
    job_id = await jobs_db.enqueue("noop", QUICK)
    assert (await jobs_db.job(job_id))["pgq_job_id"] == next_id  # alpha ranked first for it
    done = await jobs_db.wait_status(
        job_id, "succeeded", timeout=PICKED_WITHIN_SEC, diagnostics=fleet.diagnostics
    )
    assert done["worker_id"] == "beta"


# pgqueuer's dequeue statement, as pg_stat_statements keeps its text (comments included).
DEQUEUE_MARK = "%Unpack per-entrypoint parameters%"
GUARD_JOBS = 12
# With the gate about 3 dequeues per job (the woken worker's claim and its empty look, its
# completion's look); without it every idle worker looks on every insert and completion,
# about 9 or more with 4 workers.
MAX_DEQUEUES_PER_JOB = 6


async def test_wake_gate_dequeues_per_job_do_not_grow_with_idle_workers(
    project_root: Path, tmp_path: Path
) -> None:
    settings = {"shared_preload_libraries": "pg_stat_statements"}
    async with (
        private_postgres(tmp_path / "pg", settings=settings) as postgres,
        postgres.jobs_db() as jobs_db,
    ):
        await jobs_db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        with worker_fleet(
            project_root, postgres.dsn, tmp_path / "workers", pgq_args=SLOW_POLL_ARGS
        ) as fleet:
            for name in ("w1", "w2", "w3", "w4"):
                await fleet.start_ready(name)
            await jobs_db.scalar("SELECT count(*) FROM pg_stat_statements_reset()")
            for _ in range(GUARD_JOBS):
                job_id = await jobs_db.enqueue("noop", QUICK)
                await jobs_db.wait_status(
                    job_id, "succeeded", timeout=PICKED_WITHIN_SEC, diagnostics=fleet.diagnostics
                )
            dequeues = await jobs_db.scalar(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE :mark",
                mark=DEQUEUE_MARK,
            )
    per_job = int(dequeues) / GUARD_JOBS
    assert per_job <= MAX_DEQUEUES_PER_JOB, f"{per_job:.1f} dequeues per job with 4 idle workers"
