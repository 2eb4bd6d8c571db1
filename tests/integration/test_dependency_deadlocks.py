"""A transaction that loses a deadlock while releasing dependents is run again, not failed.

Each test makes a real deadlock: another connection holds a child the release trigger needs,
then asks for the row the trigger's transaction holds. PostgreSQL rolls back the transaction
that waited first (its deadlock check runs first): the manager's, or the finish writer's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable

import asyncpg
import pytest

from app.domain.attempts import FinishRequest
from app.domain.spec import JobCreate
from app.domain.states import JobEvent, JobStatus
from app.jobs.service import JobService
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.waiting import wait_until
from worker.finish_writer import FinishWriter
from worker.lock_session import LockSession

load_pipelines()  # the built-in `noop`


async def trigger(service: JobService, depends_on: list[uuid.UUID] | None = None) -> uuid.UUID:
    spec = JobCreate(
        queue="etl.default", task="noop", lock_key=f"k-{uuid.uuid4().hex}", depends_on=depends_on
    )
    [created] = await service.trigger_many([spec])
    return created.job_id


async def deadlock_with(
    db: asyncpg.Connection,
    database_dsn: str,
    holds: uuid.UUID,
    then: uuid.UUID,
    action: Awaitable[object],
) -> object:
    """Run `action` while another connection holds `holds`; once `action` waits for it, the
    other connection asks for `then` (which `action` holds), closing the cycle."""
    other = await asyncpg.connect(database_dsn)
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT 1 FROM dl_jobs WHERE job_id = $1 FOR UPDATE", holds)
        task = asyncio.ensure_future(action)

        async def waiting() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database() AND pid <> $1",
                    other.get_server_pid(),
                )
            )

        await wait_until(waiting, timeout=10, what="the action to wait for the held child")
        # The cycle: PostgreSQL rolls back the action's transaction (it waited first).
        await other.execute("SELECT 1 FROM dl_jobs WHERE job_id = $1 FOR UPDATE", then)
        await transaction.commit()
        return await asyncio.wait_for(task, 30)
    finally:
        await other.close()


@pytest.mark.timeout(60)
async def test_deadlock_a_cancel_that_loses_one_runs_again_and_succeeds(
    service: JobService, db: asyncpg.Connection, database_dsn: str
) -> None:
    parent = await trigger(service)
    child = await trigger(service, depends_on=[parent])

    canceled = await deadlock_with(db, database_dsn, child, parent, service.cancel(parent))

    assert getattr(canceled, "status", None) == "canceled"
    assert await db.fetchval("SELECT canceled_by FROM dl_jobs WHERE job_id = $1", child) == parent


@pytest.fixture
async def lock_session(database_dsn: str, settings: Settings) -> AsyncIterator[LockSession]:
    session = LockSession(database_dsn, settings.pg_schema_queue, "worker-d")
    await session.open()
    yield session
    await session.close()


@pytest.mark.timeout(60)
async def test_deadlock_a_finish_that_loses_one_is_sent_again_and_releases_the_child(
    service: JobService,
    db: asyncpg.Connection,
    database_dsn: str,
    lock_session: LockSession,
) -> None:
    parent = await trigger(service)
    child = await trigger(service, depends_on=[parent])
    pgq_job_id = await db.fetchval("SELECT pgq_job_id FROM dl_jobs WHERE job_id = $1", parent)
    answer = await lock_session.start(parent, pgq_job_id)
    assert answer is not None
    assert answer.attempt is not None
    writer = FinishWriter(database_dsn, lock_session)
    await writer.open()
    try:
        finish = writer.finish(
            FinishRequest(parent, answer.attempt.attempt, JobStatus.SUCCEEDED, JobEvent.SUCCEEDED),
            answer.lock_key,
        )
        owned = await deadlock_with(db, database_dsn, child, parent, finish)
    finally:
        await writer.close()

    assert owned is True
    assert await db.fetchval("SELECT status FROM dl_jobs WHERE job_id = $1", child) == "queued"
