"""enqueue_in_session() joins the caller's transaction: atomic, idempotent, and wakes workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import create_engine, create_session_factory
from app.domain.errors import UnknownTaskError
from app.domain.views import JobCreated
from app.jobs.enqueue import enqueue_in_session, enqueue_many_in_session
from app.settings import Settings
from tests.support.specs import echo_spec as spec

NOTIFY_CHANNEL = "ch_pgqueuer"


@pytest.fixture
async def db(database_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A separate asyncpg connection that sees only committed data, with a business table."""
    connection = await asyncpg.connect(database_dsn)
    await connection.execute("CREATE TABLE orders(id int)")
    yield connection
    await connection.close()


async def counts(db: asyncpg.Connection) -> dict[str, int]:
    """Committed rows per table."""
    return {
        table: int(await db.fetchval(f"SELECT count(*) FROM {table}"))
        for table in ("dl_jobs", "dl_job_events", "pgqueuer", "orders")
    }


@pytest.mark.parametrize("business_write_first", [True, False])
async def test_enqueue_in_session_rollback_leaves_nothing(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    business_write_first: bool,
) -> None:
    async with sessions() as session:
        transaction = await session.begin()
        if business_write_first:
            await session.execute(text("INSERT INTO orders(id) VALUES (1)"))
        result = await enqueue_in_session(session, spec(), settings)
        if not business_write_first:
            await session.execute(text("INSERT INTO orders(id) VALUES (1)"))
        assert result.created is True
        await transaction.rollback()

    assert await counts(db) == {"dl_jobs": 0, "dl_job_events": 0, "pgqueuer": 0, "orders": 0}


async def test_enqueue_in_session_commit_writes_job_event_dispatch_and_business_row(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        result = await enqueue_in_session(session, spec(queue="etl.orders"), settings)
        await session.execute(text("INSERT INTO orders(id) VALUES (7)"))

    assert result.created is True
    assert result.status == "queued"
    assert await counts(db) == {"dl_jobs": 1, "dl_job_events": 1, "pgqueuer": 1, "orders": 1}
    job = await db.fetchrow("SELECT * FROM dl_jobs")
    assert job["job_id"] == result.job_id
    assert job["status"] == "queued"
    assert job["queue"] == "etl.orders"
    assert job["task"] == "test.echo"
    assert json.loads(job["args"]) == {"n": 1}
    assert job["lease_ttl_sec"] == settings.dl_default_lease_ttl_sec
    dispatch = await db.fetchrow("SELECT * FROM pgqueuer")
    assert bytes(dispatch["payload"]) == result.job_id.bytes
    assert dispatch["entrypoint"] == "etl.orders"
    assert dispatch["status"] == "queued"
    assert job["pgq_job_id"] == dispatch["id"]
    event = await db.fetchrow("SELECT * FROM dl_job_events")
    assert event["job_id"] == result.job_id
    assert event["event"] == "queued"


@pytest.mark.parametrize("jobs", [1, 3])
async def test_enqueue_notifies_workers_only_on_commit(
    database_dsn: str,
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    jobs: int,
) -> None:
    """One job through enqueue_in_session, several through enqueue_many_in_session."""
    received: list[dict[str, object]] = []
    notified = asyncio.Event()

    def on_notify(_conn: object, _pid: int, channel: str, payload: str) -> None:
        received.append({"channel": channel, **json.loads(payload)})
        notified.set()

    listener = await asyncpg.connect(database_dsn)
    try:
        await listener.add_listener(NOTIFY_CHANNEL, on_notify)
        async with sessions() as session:
            transaction = await session.begin()
            if jobs == 1:
                await enqueue_in_session(session, spec(), settings)
            else:
                specs = [spec(args={"i": i}) for i in range(jobs)]
                await enqueue_many_in_session(session, specs, settings)
            # Absence check: the one bounded wait; no notification may arrive before commit.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(notified.wait(), timeout=0.5)
            assert received == []
            await transaction.commit()

        await asyncio.wait_for(notified.wait(), timeout=10)
    finally:
        await listener.close()

    assert received[0]["channel"] == NOTIFY_CHANNEL
    assert received[0]["operation"] == "insert"
    assert received[0]["table"] == "pgqueuer"
    assert (await counts(db))["pgqueuer"] == jobs


async def test_enqueue_in_session_concurrent_idempotency_key_makes_one_job(
    db: asyncpg.Connection, settings: Settings
) -> None:
    callers = 50
    wide_engine = create_engine(settings, pool_size=callers)
    sessions = create_session_factory(wide_engine)

    async def trigger() -> JobCreated:
        async with sessions() as session, session.begin():
            return await enqueue_in_session(
                session, spec(idempotency_key="order-42:load"), settings
            )

    try:
        results = await asyncio.gather(*(trigger() for _ in range(callers)))
    finally:
        await wide_engine.dispose()

    assert len({r.job_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert {r.status for r in results} == {"queued"}
    assert await counts(db) == {"dl_jobs": 1, "dl_job_events": 1, "pgqueuer": 1, "orders": 0}
    assert await db.fetchval("SELECT job_id FROM dl_jobs") == results[0].job_id


async def test_enqueue_in_session_existing_key_returns_the_job_and_writes_nothing(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        first = await enqueue_in_session(session, spec(idempotency_key="k-1"), settings)
    async with sessions() as session, session.begin():
        # The same request, its defaults spelled out (a different one is a conflict:
        # test_idempotency_rules).
        same = spec(
            idempotency_key="k-1",
            priority=100,
            max_attempts=5,
            lease_ttl_sec=settings.dl_default_lease_ttl_sec,
        )
        second = await enqueue_in_session(session, same, settings)

    assert second.job_id == first.job_id
    assert second.created is False
    assert await counts(db) == {"dl_jobs": 1, "dl_job_events": 1, "pgqueuer": 1, "orders": 0}
    assert await db.fetchval("SELECT queue FROM dl_jobs") == "etl.test"


async def test_enqueue_in_session_unknown_task_raises_and_writes_nothing(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text("INSERT INTO orders(id) VALUES (1)"))
        with pytest.raises(UnknownTaskError, match=r"no\.such\.task"):
            await enqueue_in_session(session, spec(task="no.such.task"), settings)
        # The caller may still commit its own work; the failed enqueue must add nothing to it.

    assert await counts(db) == {"dl_jobs": 0, "dl_job_events": 0, "pgqueuer": 0, "orders": 1}


async def test_enqueue_in_session_available_at_sets_execute_after(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    available_at = datetime.now(UTC) + timedelta(hours=1)
    async with sessions() as session, session.begin():
        result = await enqueue_in_session(session, spec(available_at=available_at), settings)

    row = await db.fetchrow(
        "SELECT j.available_at, q.execute_after FROM dl_jobs j"
        " JOIN pgqueuer q ON q.id = j.pgq_job_id WHERE j.job_id = $1",
        result.job_id,
    )
    assert abs(row["available_at"] - available_at) < timedelta(seconds=1)
    assert abs(row["execute_after"] - available_at) < timedelta(seconds=3)


async def test_enqueue_in_session_naive_available_at_is_utc(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    available_at = datetime.now(UTC) + timedelta(minutes=30)
    naive = available_at.replace(tzinfo=None)
    async with sessions() as session, session.begin():
        await enqueue_in_session(session, spec(available_at=naive), settings)

    execute_after = await db.fetchval("SELECT execute_after FROM pgqueuer")
    assert abs(execute_after - available_at) < timedelta(seconds=3)


async def test_enqueue_in_session_past_available_at_runs_now(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        await enqueue_in_session(
            session, spec(available_at=datetime.now(UTC) - timedelta(days=1)), settings
        )

    row = await db.fetchrow("SELECT execute_after, now() AS db_now FROM pgqueuer")
    assert row["execute_after"] <= row["db_now"]
    assert row["db_now"] - row["execute_after"] < timedelta(seconds=10)


async def test_enqueue_in_session_lower_priority_number_runs_first_in_pgqueuer(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        urgent = await enqueue_in_session(session, spec(priority=0), settings)
        normal = await enqueue_in_session(session, spec(priority=100), settings)
        backfill = await enqueue_in_session(session, spec(priority=10_000), settings)

    rows = await db.fetch(
        "SELECT j.job_id FROM dl_jobs j JOIN pgqueuer q ON q.id = j.pgq_job_id"
        " ORDER BY q.priority DESC, q.id ASC"
    )
    # pgqueuer dequeues by priority DESC, id ASC: this is the order workers pick jobs in.
    assert [r["job_id"] for r in rows] == [urgent.job_id, normal.job_id, backfill.job_id]
    stored = {
        r["job_id"]: r["priority"] for r in await db.fetch("SELECT job_id, priority FROM dl_jobs")
    }
    assert stored == {urgent.job_id: 0, normal.job_id: 100, backfill.job_id: 10_000}
