"""Batches in the database: the callback is created once, when the last job of the batch
reaches a final status, with the counts; in the transaction of that last change.

Jobs end here by their status changing in dl_jobs, as every path that ends a job changes it
(worker, reaper, cancel); tests/e2e/test_batches.py runs real workers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.batch_functions import install_statements
from app.domain.errors import InvalidJobError
from app.domain.spec import JobCreate
from app.jobs.batches import BatchCreated, create_batch_in_session
from app.jobs.enqueue import enqueue_batch_in_session
from app.jobs.manager import JobManager
from app.settings import Settings
from tests.support.specs import echo_spec

CALLBACK = JobCreate(queue="etl.test", task="noop", lock_key="batch-done", args={"tag": "x"})


async def make_batch(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    count: int,
    on_complete: JobCreate = CALLBACK,
    **overrides: Any,
) -> BatchCreated:
    specs = [echo_spec(lock_key=f"batch-{n}", **overrides) for n in range(count)]
    async with sessions() as session, session.begin():
        return await enqueue_batch_in_session(session, specs, on_complete, settings)


async def end(db: asyncpg.Connection, job_id: uuid.UUID, status: str) -> None:
    await db.execute("UPDATE dl_jobs SET status = $2 WHERE job_id = $1", job_id, status)


async def callbacks(db: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT job_id, queue, task, lock_key, args, status FROM dl_jobs"
        " WHERE lock_key = 'batch-done' ORDER BY created_at"
    )
    return [{**row, "args": json.loads(row["args"])} for row in rows]


async def batch_row(db: asyncpg.Connection, batch_id: uuid.UUID) -> dict[str, Any]:
    return dict(await db.fetchrow("SELECT * FROM dl_batches WHERE batch_id = $1", batch_id))


async def test_the_callback_comes_once_when_the_last_job_ends_with_the_counts(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    batch = await make_batch(sessions, settings, 4)
    ids = [job.job_id for job in batch.jobs]

    for job_id, status in zip(ids[:3], ["succeeded", "failed", "canceled"], strict=True):
        await end(db, job_id, status)
        assert await callbacks(db) == []
    await end(db, ids[3], "lost")

    [callback] = await callbacks(db)
    assert (callback["queue"], callback["task"], callback["status"]) == (
        "etl.test",
        "noop",
        "queued",
    )
    assert callback["args"] == {
        "tag": "x",
        "batch": {
            "batch_id": str(batch.batch_id),
            "total": 4,
            "succeeded": 1,
            "failed": 1,
            "canceled": 1,
            "lost": 1,
        },
    }
    row = await batch_row(db, batch.batch_id)
    assert (row["pending"], row["callback_job_id"]) == (0, callback["job_id"])
    assert row["completed_at"] is not None
    # The callback is a job like any other: dispatched, with its `queued` event.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM pgqueuer d JOIN dl_jobs j ON j.pgq_job_id = d.id"
            " WHERE j.job_id = $1",
            callback["job_id"],
        )
        == 1
    )


async def test_the_last_two_jobs_ending_at_once_make_one_callback(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    db: asyncpg.Connection,
    database_dsn: str,
) -> None:
    """Two hosts finish the last two jobs in concurrent transactions: one callback."""
    for _ in range(5):
        batch = await make_batch(sessions, settings, 2)
        first, second = [await asyncpg.connect(database_dsn) for _ in range(2)]
        try:
            one, two = first.transaction(), second.transaction()
            await one.start()
            await two.start()
            sql = "UPDATE dl_jobs SET status = $2 WHERE job_id = $1"
            await first.execute(sql, batch.jobs[0].job_id, "succeeded")
            # Waits for the first's lock on the batch row, taken by the trigger.
            ending = asyncio.create_task(second.execute(sql, batch.jobs[1].job_id, "failed"))
            await asyncio.sleep(0.2)
            assert not ending.done(), "the second end must wait for the first's commit"
            await one.commit()
            await ending
            await two.commit()
        finally:
            await first.close()
            await second.close()
        row = await batch_row(db, batch.batch_id)
        assert (row["pending"], row["succeeded"], row["failed"]) == (0, 1, 1)
        assert (
            await db.fetchval(
                "SELECT count(*) FROM dl_jobs WHERE args->'batch'->>'batch_id' = $1",
                str(batch.batch_id),
            )
            == 1
        )


async def test_a_job_retried_before_the_batch_completes_counts_again_once_it_ends(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    batch = await make_batch(sessions, settings, 2)
    first, second = (job.job_id for job in batch.jobs)
    await end(db, first, "failed")
    await end(db, first, "queued")  # POST /jobs/{id}/retry

    await end(db, second, "succeeded")
    assert await callbacks(db) == []
    await end(db, first, "succeeded")

    [callback] = await callbacks(db)
    assert callback["args"]["batch"]["succeeded"] == 2
    assert callback["args"]["batch"]["failed"] == 0


async def test_a_completed_batch_never_makes_a_second_callback(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    batch = await make_batch(sessions, settings, 1)
    job_id = batch.jobs[0].job_id
    await end(db, job_id, "failed")
    await end(db, job_id, "queued")  # retried after the batch completed
    await end(db, job_id, "succeeded")

    assert len(await callbacks(db)) == 1
    row = await batch_row(db, batch.batch_id)
    assert (row["pending"], row["failed"], row["succeeded"]) == (0, 1, 0)


async def test_sending_the_same_batch_again_returns_it_and_makes_no_second_callback(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    first = await make_batch(sessions, settings, 2, idempotency_key=None)
    keyed = [echo_spec(lock_key=f"keyed-{n}", idempotency_key=f"load-{n}") for n in range(2)]
    async with sessions() as session, session.begin():
        sent = await enqueue_batch_in_session(session, keyed, CALLBACK, settings)
    async with sessions() as session, session.begin():
        again = await enqueue_batch_in_session(session, keyed, CALLBACK, settings)

    assert again.batch_id == sent.batch_id != first.batch_id
    assert [job.created for job in again.jobs] == [False, False]
    assert await db.fetchval("SELECT count(*) FROM dl_batches") == 2
    assert await callbacks(db) == []


async def test_a_batch_of_jobs_that_all_existed_completes_at_once(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    """Items that find jobs outside any batch are not part of it: nothing to wait for."""
    keyed = [echo_spec(lock_key="plain", idempotency_key="plain-1")]
    async with sessions() as session, session.begin():
        await JobManager.from_settings(settings).create_many_in_session(session, keyed)

    async with sessions() as session, session.begin():
        batch = await enqueue_batch_in_session(session, keyed, CALLBACK, settings)

    [callback] = await callbacks(db)
    assert callback["args"]["batch"] == {
        "batch_id": str(batch.batch_id),
        "total": 0,
        "succeeded": 0,
        "failed": 0,
        "canceled": 0,
        "lost": 0,
    }


@pytest.mark.parametrize(
    ("callback", "named"),
    [
        (
            JobCreate(queue="etl.test", task="noop", lock_key="k", idempotency_key="x"),
            "idempotency_key",
        ),
        (JobCreate(queue="etl.test", task="noop", lock_key="k", coalescing=True), "coalescing"),
        (JobCreate(queue="etl.test", task="noop", lock_key="k", args={"batch": 1}), "args.batch"),
        (JobCreate(queue="etl.test", task="no.such", lock_key="k"), "no.such"),
        (JobCreate(queue="etl.test", task="noop", lock_key="k", args={"steps": -1}), "steps"),
    ],
    ids=["idempotency_key", "coalescing", "batch-arg", "unknown-task", "bad-args"],
)
async def test_a_bad_callback_is_refused_naming_it_and_nothing_is_written(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    db: asyncpg.Connection,
    callback: JobCreate,
    named: str,
) -> None:
    with pytest.raises(InvalidJobError) as refused:
        await make_batch(sessions, settings, 2, on_complete=callback)

    assert str(refused.value).startswith("on_complete: "), str(refused.value)
    assert named in str(refused.value)
    assert await db.fetchval("SELECT count(*) FROM dl_jobs") == 0


async def test_a_callback_the_database_refuses_does_not_undo_the_last_jobs_end(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    """Checked at creation, a callback cannot be refused later; should one ever be (here:
    written unchecked), the job still ends and the batch says why it has no callback."""
    unchecked = JobCreate(queue="bad queue!", task="noop", lock_key="batch-done")
    async with sessions() as session, session.begin():
        batch = await create_batch_in_session(
            session, JobManager.from_settings(settings), [echo_spec()], unchecked
        )

    await end(db, batch.jobs[0].job_id, "succeeded")

    row = await batch_row(db, batch.batch_id)
    assert row["completed_at"] is not None
    assert row["callback_job_id"] is None
    assert "queue" in row["callback_error"]
    assert (
        await db.fetchval("SELECT status FROM dl_jobs WHERE job_id = $1", batch.jobs[0].job_id)
        == "succeeded"
    )


async def test_the_installed_functions_are_what_the_code_renders(
    db: asyncpg.Connection, settings: Settings
) -> None:
    for statement, name in zip(
        install_statements(settings.pg_schema_queue)[:2],
        ("dl_batch_complete", "dl_batch_count"),
        strict=True,
    ):
        installed = await db.fetchval("SELECT prosrc FROM pg_proc WHERE proname = $1", name)
        assert installed is not None, name
        assert installed in statement, name
