"""The retention service's pass and cadence, called directly on a real database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.settings import Settings
from tests.support.jobs_db import JobsDb
from worker.maintenance.retention import Retention, RetentionConfig, RetentionResult

WEEK = timedelta(days=7)
OLD = timedelta(days=8)  # older than the retention
RECENT = timedelta(days=6)
EVENTS_PER_JOB = 3


async def add_jobs(
    db: asyncpg.Connection,
    count: int,
    status: str,
    *,
    age: timedelta,
    finished: bool = True,
) -> list[uuid.UUID]:
    """`count` jobs created `age` ago, finished then (or not), with three events each."""
    rows = await db.fetch(
        """
        INSERT INTO dl_jobs (job_id, queue, task, lock_key, status, attempt,
                             created_at, started_at, finished_at)
        SELECT gen_random_uuid(), 'etl.default', 'noop', 'retention-' || g, $2, 1,
               now() - $3::interval, now() - $3::interval,
               CASE WHEN $4 THEN now() - $3::interval END
        FROM generate_series(1, $1) AS g
        RETURNING job_id
        """,
        count,
        status,
        age,
        finished,
    )
    ids = [row["job_id"] for row in rows]
    await add_events(db, ids, age=age)
    return ids


async def add_events(db: asyncpg.Connection, job_ids: list[uuid.UUID], *, age: timedelta) -> None:
    """Three events for each id, written `age` ago (no job row needed: there is no FK)."""
    await db.execute(
        """
        INSERT INTO dl_job_events (job_id, event, attempt, at)
        SELECT id, e.event, 1, now() - $2::interval
        FROM unnest($1::uuid[]) AS id
        CROSS JOIN (VALUES ('queued'), ('started'), ('succeeded')) AS e(event)
        """,
        job_ids,
        age,
    )


async def existing_jobs(db: asyncpg.Connection) -> set[uuid.UUID]:
    return {row["job_id"] for row in await db.fetch("SELECT job_id FROM dl_jobs")}


async def events_by_job(db: asyncpg.Connection) -> dict[uuid.UUID, int]:
    rows = await db.fetch("SELECT job_id, count(*) AS n FROM dl_job_events GROUP BY job_id")
    return {row["job_id"]: row["n"] for row in rows}


async def drain(retention: Retention, passes: int = 50) -> list[RetentionResult]:
    """Passes until one leaves nothing behind; all of their results."""
    results = [await retention.run_once()]
    while results[-1].more_remain:
        assert len(results) < passes, results
        results.append(await retention.run_once())
    return results


async def test_retention_deletes_old_finished_jobs_and_only_their_events(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    old_finished = [
        job_id
        for status in ("succeeded", "failed", "canceled", "lost")
        for job_id in await add_jobs(db, 3, status, age=OLD)
    ]
    kept = [
        *await add_jobs(db, 2, "succeeded", age=RECENT),
        *await add_jobs(db, 2, "failed", age=timedelta(minutes=1)),
        # Live jobs stay however old they are.
        *await add_jobs(db, 2, "queued", age=timedelta(days=400), finished=False),
        *await add_jobs(db, 2, "running", age=timedelta(days=400), finished=False),
        # A retried job back in the queue keeps its old finished_at; it is not finished.
        *await add_jobs(db, 1, "queued", age=timedelta(days=400)),
    ]

    result = await Retention(sessions, RetentionConfig(WEEK)).run_once()

    assert result.jobs == len(old_finished)
    assert result.events == len(old_finished) * EVENTS_PER_JOB
    assert not result.more_remain
    assert await existing_jobs(db) == set(kept)
    assert await events_by_job(db) == dict.fromkeys(kept, EVENTS_PER_JOB)


async def test_retention_deletes_old_pgqueuer_log_and_statistics_rows(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await db.execute(
        """
        INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint)
        SELECT now() - $1::interval, g, 'successful', 0, 'etl.default'
        FROM generate_series(1, 5) AS g
        """,
        OLD,
    )
    await db.execute(
        """
        INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint)
        SELECT now() - $1::interval, g, 'successful', 0, 'etl.default'
        FROM generate_series(6, 7) AS g
        """,
        RECENT,
    )
    # One bucket per second (the table's unique key), four old and three recent.
    for age, buckets in ((OLD, 4), (RECENT, 3)):
        await db.execute(
            """
            INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)
            SELECT now() - $1::interval - g * interval '1 second', 1, 0,
                   'successful'::pgqueuer_status, 'etl.default'
            FROM generate_series(1, $2) AS g
            """,
            age,
            buckets,
        )

    result = await Retention(sessions, RetentionConfig(WEEK)).run_once()

    assert (result.pgqueuer_log, result.pgqueuer_statistics) == (5, 4)
    assert (result.jobs, result.events) == (0, 0)
    assert await db.fetchval("SELECT count(*) FROM pgqueuer_log") == 2
    assert await db.fetchval("SELECT count(*) FROM pgqueuer_statistics") == 3
    oldest = "SELECT min(created) > now() - interval '7 days' FROM {}"
    assert await db.fetchval(oldest.format("pgqueuer_log"))
    assert await db.fetchval(oldest.format("pgqueuer_statistics"))


async def test_retention_works_in_bounded_batches_and_says_when_more_remain(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    doomed = await add_jobs(db, 45, "succeeded", age=OLD)
    kept = await add_jobs(db, 3, "succeeded", age=RECENT)
    await db.execute(
        """
        INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint)
        SELECT now() - $1::interval, g, 'successful', 0, 'etl.default'
        FROM generate_series(1, 25) AS g
        """,
        OLD,
    )
    retention = Retention(sessions, RetentionConfig(WEEK, batch_size=10, max_batches_per_pass=6))

    first = await retention.run_once()

    assert first.more_remain
    assert first.batches == 6
    assert 0 < first.jobs < len(doomed)
    assert first.jobs % 10 == 0  # whole batches
    assert first.events == first.jobs * EVENTS_PER_JOB
    assert 0 < first.pgqueuer_log <= 25

    rest = await drain(retention)

    assert all(result.batches <= 6 for result in rest)
    assert first.jobs + sum(result.jobs for result in rest) == len(doomed)
    assert first.pgqueuer_log + sum(result.pgqueuer_log for result in rest) == 25
    assert await existing_jobs(db) == set(kept)
    assert await events_by_job(db) == dict.fromkeys(kept, EVENTS_PER_JOB)

    again = await retention.run_once()

    assert again.deleted == 0
    assert not again.more_remain


async def test_retention_skips_a_job_another_transaction_holds_without_waiting(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    held, free = await add_jobs(db, 2, "failed", age=OLD)
    retention = Retention(sessions, RetentionConfig(WEEK))
    transaction = db.transaction()
    await transaction.start()
    try:  # as a retry of the failed job would, mid-way
        await db.execute("SELECT 1 FROM dl_jobs WHERE job_id = $1 FOR UPDATE", held)

        result = await asyncio.wait_for(retention.run_once(), timeout=10)

        assert result.jobs == 1
    finally:
        await transaction.rollback()
    assert await existing_jobs(db) == {held}
    assert await events_by_job(db) == {held: EVENTS_PER_JOB}

    later = await retention.run_once()

    assert (later.jobs, later.events) == (1, EVENTS_PER_JOB)
    assert await existing_jobs(db) == set()
    assert free not in await events_by_job(db)


async def test_retention_sweeps_old_orphan_events_and_keeps_young_ones(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    old_orphans = [uuid.uuid4() for _ in range(5)]
    await add_events(db, old_orphans, age=OLD)
    live = await add_jobs(db, 1, "queued", age=timedelta(days=30), finished=False)
    young_orphans = [uuid.uuid4() for _ in range(2)]
    await add_events(db, young_orphans, age=RECENT)
    # Windows of 4 events: the sweep walks several of them and stops at the young ones.
    retention = Retention(sessions, RetentionConfig(WEEK, batch_size=4))

    result = await retention.run_once()

    assert result.events == len(old_orphans) * EVENTS_PER_JOB
    assert result.jobs == 0
    assert not result.more_remain
    assert await events_by_job(db) == dict.fromkeys([*live, *young_orphans], EVENTS_PER_JOB)

    # The sweep starts over each time it reaches young events: events orphaned since, by
    # a job deleted by hand, are found on the next pass.
    await db.execute("DELETE FROM dl_jobs WHERE job_id = ANY($1)", live)
    assert (await retention.run_once()).events == EVENTS_PER_JOB
    assert await events_by_job(db) == dict.fromkeys(young_orphans, EVENTS_PER_JOB)


async def test_retention_of_zero_keeps_everything(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    jobs = await add_jobs(db, 3, "succeeded", age=timedelta(days=4000))
    await add_events(db, [uuid.uuid4()], age=timedelta(days=4000))

    result = await Retention(sessions, RetentionConfig(timedelta(0))).run_once()

    assert result == RetentionResult()
    assert set(jobs) <= await existing_jobs(db)
    assert await db.fetchval("SELECT count(*) FROM dl_job_events") == 4 * EVENTS_PER_JOB


async def test_retention_deletes_jobs_finished_by_the_real_lifecycle(
    engine: AsyncEngine,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    db: asyncpg.Connection,
) -> None:
    jobs = JobsDb(engine, settings)
    canceled = await jobs.enqueue()
    queued = await jobs.enqueue()
    await jobs.service.cancel(canceled)
    await db.execute(
        "UPDATE dl_jobs SET finished_at = finished_at - $1::interval WHERE job_id = $2",
        OLD,
        canceled,
    )
    # Both jobs wrote pgqueuer_log rows as they were enqueued and canceled; age them too.
    await db.execute("UPDATE pgqueuer_log SET created = created - $1::interval", OLD)

    result = await Retention(sessions, RetentionConfig(WEEK)).run_once()

    assert (result.jobs, result.events) == (1, 2)  # queued, canceled
    assert result.pgqueuer_log >= 2
    assert await existing_jobs(db) == {queued}
    assert await jobs.event_names(queued) == ["queued"]


async def test_retention_service_prunes_at_once_then_waits_its_period(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await add_jobs(db, 2, "succeeded", age=OLD)
    retention = Retention(sessions, RetentionConfig(WEEK, period_sec=300))
    stopped = asyncio.Event()

    async def stop_after_this_pass() -> None:
        stopped.set()

    assert retention.first_wait_sec() == 0  # a new leader process prunes in its first pass
    await retention.run(stopped, stop_after_this_pass)

    assert await existing_jobs(db) == set()
    # The next pass is a period away, in this term and in any later one of this process.
    assert 299 < retention.first_wait_sec() <= 300


async def test_retention_service_comes_back_sooner_while_a_backlog_remains(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await add_jobs(db, 45, "succeeded", age=OLD)
    config = RetentionConfig(
        WEEK, period_sec=300, backlog_period_sec=10, batch_size=10, max_batches_per_pass=4
    )
    retention = Retention(sessions, config)

    waits = [await retention.pass_then_wait()]
    while waits[-1] != 300:
        assert len(waits) < 20, waits
        waits.append(await retention.pass_then_wait())

    assert waits[:-1] == [10] * (len(waits) - 1)
    assert len(waits) >= 3  # 45 jobs in batches of 10, at most 4 batches a pass
    assert await existing_jobs(db) == set()


async def test_retention_forgets_rate_buckets_only_once_they_count_nothing(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    """A bucket untouched for longer than any period, with no one told to come back later."""
    insert = (
        "INSERT INTO dl_rate_buckets (queue, rate_key, started_at, started_n, promise_at,"
        " updated_at) VALUES ('q', $1, ARRAY[now() - $2::interval], ARRAY[1],"
        " now() + $3::interval, now() - $2::interval)"
    )
    await db.execute(insert, "idle", timedelta(days=2), timedelta(days=-2))
    await db.execute(insert, "recent", timedelta(hours=2), timedelta(hours=-2))
    await db.execute(insert, "promised", timedelta(days=2), timedelta(hours=1))

    await Retention(sessions, RetentionConfig(WEEK)).run_once()

    kept = {row["rate_key"] for row in await db.fetch("SELECT rate_key FROM dl_rate_buckets")}
    assert kept == {"recent", "promised"}


async def test_retention_deletes_old_steps_with_their_edges_then_their_emptied_workflow(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A finished step goes with its edges (as parent and as child); a workflow goes once
    its steps are gone and it is older than the retention, never while one remains."""
    [old_parent, old_child] = await add_jobs(db, 2, "succeeded", age=OLD)
    [live] = await add_jobs(db, 1, "running", age=OLD, finished=False)
    [young] = await add_jobs(db, 1, "succeeded", age=RECENT)
    emptied, kept = uuid.uuid4(), uuid.uuid4()
    await db.execute(
        "INSERT INTO dl_workflows (workflow_id, name, step_count, created_at)"
        " VALUES ($1, 'old', 2, now() - $3::interval), ($2, 'running', 1, now() - $3::interval)",
        emptied,
        kept,
        OLD,
    )
    await db.execute(
        "UPDATE dl_jobs SET workflow_id = $1, step_name = job_id::text"
        " WHERE job_id = ANY($2::uuid[])",
        emptied,
        [old_parent, old_child],
    )
    await db.execute(
        "UPDATE dl_jobs SET workflow_id = $1, step_name = 'live' WHERE job_id = $2", kept, live
    )
    await db.execute(
        "INSERT INTO dl_job_dependencies (parent_id, child_id) VALUES ($1, $2), ($2, $3), ($3, $4)",
        old_parent,
        old_child,
        young,
        live,
    )

    # Workflows are looked at before the jobs' batches: the steps go in the first pass,
    # their emptied workflow in the next.
    first = await Retention(sessions, RetentionConfig(WEEK)).run_once()
    second = await Retention(sessions, RetentionConfig(WEEK)).run_once()

    edges = await db.fetch("SELECT parent_id, child_id FROM dl_job_dependencies")
    assert [(e["parent_id"], e["child_id"]) for e in edges] == [(young, live)]
    left = {r["workflow_id"] for r in await db.fetch("SELECT workflow_id FROM dl_workflows")}
    assert left == {kept}
    assert (first.jobs, first.workflows, second.workflows) == (2, 0, 1)
