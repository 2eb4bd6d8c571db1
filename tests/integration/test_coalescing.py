"""Coalescing triggers in the caller's transaction (enqueue_in_session, dl_enqueue).

One queued job per queue, task and lock_key among coalescing triggers; a later one joins
it (a `coalesced` event) instead of adding another; a running job is never joined; and a
joined job does not start before the transaction that joined it commits.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import create_engine, create_session_factory
from app.domain.attempts import StartAnswer
from app.domain.spec import JobCreate
from app.domain.views import JobCreated
from app.jobs.enqueue import enqueue_in_session, enqueue_many_in_session
from app.settings import Settings
from tests.support.specs import echo_spec
from worker.lock_session import LockSession

LOCK_KEY = "table:sales"
SQL_JOIN = (
    "SELECT * FROM dl_enqueue(queue => 'etl.test', task => 'test.echo', lock_key => $1,"
    " args => '{\"n\": 1}', coalescing => true)"
)


def refresh(**overrides: object) -> JobCreate:
    """A coalescing trigger of the `table:sales` refresh."""
    values: dict[str, object] = {"lock_key": LOCK_KEY, "coalescing": True}
    values.update(overrides)
    return echo_spec(**values)


@pytest.fixture
async def lock_session(database_dsn: str, settings: Settings) -> AsyncIterator[LockSession]:
    """A worker's lock session: it starts jobs with the worker's own start statement."""
    session = LockSession(database_dsn, settings.pg_schema_queue, "coalescing-test")
    await session.open()
    yield session
    await session.close()


async def enqueue(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, spec: JobCreate
) -> JobCreated:
    """enqueue_in_session() in a transaction of its own, committed."""
    async with sessions() as session, session.begin():
        return await enqueue_in_session(session, spec, settings)


async def start(
    db: asyncpg.Connection, lock_session: LockSession, job_id: uuid.UUID
) -> StartAnswer:
    """Ask the lock session to start the job's current dispatch; its answer."""
    pgq_job_id = await db.fetchval("SELECT pgq_job_id FROM dl_jobs WHERE job_id = $1", job_id)
    answer = await lock_session.start(job_id, pgq_job_id)
    assert answer is not None, "the job's current dispatch is always answered"
    return answer


async def start_ok(db: asyncpg.Connection, lock_session: LockSession, job_id: uuid.UUID) -> None:
    """Start the job, which must start."""
    answer = await start(db, lock_session, job_id)
    assert answer.attempt is not None, answer


async def history(db: asyncpg.Connection, job_id: uuid.UUID) -> list[tuple[str, object]]:
    rows = await db.fetch(
        "SELECT event, details FROM dl_job_events WHERE job_id = $1 ORDER BY id", job_id
    )
    return [(r["event"], json.loads(r["details"]) if r["details"] else None) for r in rows]


async def counts(db: asyncpg.Connection) -> tuple[int, int]:
    """Committed jobs and dispatches."""
    return (
        int(await db.fetchval("SELECT count(*) FROM dl_jobs")),
        int(await db.fetchval("SELECT count(*) FROM pgqueuer")),
    )


async def test_coalescing_enqueue_joins_the_queued_job_and_logs_it(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first = await enqueue(sessions, settings, refresh())
    second = await enqueue(sessions, settings, refresh())

    assert (first.created, first.coalesced, first.differs) == (True, False, msgspec.UNSET)
    assert (second.job_id, second.status, second.created) == (first.job_id, "queued", False)
    assert (second.coalesced, second.differs) == (True, [])
    assert await counts(db) == (1, 1)
    assert await history(db, first.job_id) == [
        ("queued", {"queue": "etl.test", "task": "test.echo"}),
        ("coalesced", {"differs": []}),
    ]
    assert await db.fetchval("SELECT coalescing FROM dl_jobs") is True


async def test_coalescing_enqueue_names_what_differs_and_leaves_the_job_as_it_is(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first = await enqueue(sessions, settings, refresh(args={"n": 1}))
    later = refresh(args={"n": 1.0}, priority=5, producer="shop", max_attempts=5)

    second = await enqueue(sessions, settings, later)

    assert second.job_id == first.job_id
    assert second.differs == ["args", "priority", "producer"]  # max_attempts 5 is the default
    row = await db.fetchrow("SELECT args, priority, producer FROM dl_jobs")
    assert (json.loads(row["args"]), row["priority"], row["producer"]) == ({"n": 1}, 100, None)
    assert (await history(db, first.job_id))[-1] == (
        "coalesced",
        {"differs": ["args", "priority", "producer"], "producer": "shop"},
    )


async def test_coalescing_join_rolled_back_leaves_no_event(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first = await enqueue(sessions, settings, refresh())
    async with sessions() as session:
        transaction = await session.begin()
        joined = await enqueue_in_session(session, refresh(), settings)
        assert joined.coalesced is True
        await transaction.rollback()

    assert [event for event, _ in await history(db, first.job_id)] == ["queued"]


async def test_coalescing_joins_only_its_queue_task_and_lock_key_and_only_coalescing_jobs(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    plain = await enqueue(sessions, settings, echo_spec(lock_key=LOCK_KEY))
    first = await enqueue(sessions, settings, refresh())
    others = [
        await enqueue(sessions, settings, refresh(lock_key="table:stock")),
        await enqueue(sessions, settings, refresh(queue="etl.other")),
        await enqueue(sessions, settings, refresh(task="noop", args={})),
    ]
    plain_again = await enqueue(sessions, settings, echo_spec(lock_key=LOCK_KEY))
    joined = await enqueue(sessions, settings, refresh())

    # A trigger that does not coalesce neither joins nor is joined, and answers as before.
    assert (plain.created, plain_again.created) == (True, True)
    assert plain_again.job_id != plain.job_id
    assert (plain.coalesced, plain.differs) == (msgspec.UNSET, msgspec.UNSET)
    assert first.created is True
    assert first.job_id != plain.job_id
    assert all(other.created for other in others)
    assert (joined.job_id, joined.coalesced) == (first.job_id, True)
    assert await counts(db) == (6, 6)


async def test_a_running_job_is_not_joined_the_next_trigger_queues_another(
    db: asyncpg.Connection,
    lock_session: LockSession,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    running = await enqueue(sessions, settings, refresh())
    await start_ok(db, lock_session, running.job_id)

    after = await enqueue(sessions, settings, refresh())
    joined = await enqueue(sessions, settings, refresh())

    assert after.created is True
    assert after.job_id != running.job_id
    assert (joined.job_id, joined.coalesced) == (after.job_id, True)
    assert [event for event, _ in await history(db, running.job_id)] == ["queued", "started"]


async def _join_in_open_transaction(
    how: str, sessions: async_sessionmaker[AsyncSession], settings: Settings, database_dsn: str
) -> tuple[uuid.UUID, object]:
    """Join the queued job in a transaction left open; (the job joined, a way to commit it)."""
    if how == "enqueue_in_session":
        session = sessions()
        await session.begin()
        joined = await enqueue_in_session(session, refresh(), settings)
        assert joined.coalesced is True
        return joined.job_id, session
    connection = await asyncpg.connect(database_dsn)
    await connection.execute("BEGIN")
    row = await connection.fetchrow(SQL_JOIN, LOCK_KEY)
    assert row["coalesced"] is True
    return row["job_id"], connection


async def _commit(holder: object) -> None:
    if isinstance(holder, AsyncSession):
        await holder.commit()
        await holder.close()
    else:
        assert isinstance(holder, asyncpg.Connection)
        await holder.execute("COMMIT")
        await holder.close()


@pytest.mark.parametrize("how", ["enqueue_in_session", "dl_enqueue"])
async def test_a_job_joined_by_an_open_transaction_starts_only_after_it_commits(
    how: str,
    database_dsn: str,
    db: asyncpg.Connection,
    lock_session: LockSession,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The trigger may have written what the job is to read: the job waits for its commit."""
    queued = await enqueue(sessions, settings, refresh())
    job_id, holder = await _join_in_open_transaction(how, sessions, settings, database_dsn)
    assert job_id == queued.job_id
    try:
        held = await start(db, lock_session, job_id)

        assert held.attempt is None, held
        assert (held.trigger_open, held.lock_busy) == (True, False)
        row = await db.fetchrow("SELECT status, attempt FROM dl_jobs WHERE job_id = $1", job_id)
        assert (row["status"], row["attempt"]) == ("queued", 0)
        assert lock_session.held == {}, "no lock_key lock taken for a job that waits"
    finally:
        await _commit(holder)

    await start_ok(db, lock_session, job_id)
    assert [event for event, _ in await history(db, job_id)] == ["queued", "coalesced", "started"]


async def test_a_job_an_open_trigger_holds_asks_no_rate_bucket_and_starts_after_the_commit(
    database_dsn: str,
    db: asyncpg.Connection,
    lock_session: LockSession,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The trigger check comes before the rate buckets: a start that cannot happen is not
    counted, so the queue's one start an hour is still free once the trigger commits."""
    await db.execute(
        "INSERT INTO dl_queues (queue, start_limit, start_period_sec) VALUES ($1, 1, 3600)",
        refresh().queue,
    )
    queued = await enqueue(sessions, settings, refresh(rate_key="partner-a"))
    job_id, holder = await _join_in_open_transaction(
        "enqueue_in_session", sessions, settings, database_dsn
    )
    assert job_id == queued.job_id
    try:
        held = await start(db, lock_session, job_id)

        assert (held.attempt, held.trigger_open, held.rate_limited) == (None, True, False)
        assert await db.fetchval("SELECT count(*) FROM dl_rate_buckets") == 0
    finally:
        await _commit(holder)

    await start_ok(db, lock_session, job_id)
    counted = await db.fetchval(
        "SELECT sum(n) FROM dl_rate_buckets, unnest(started_n) AS n WHERE queue = $1",
        refresh().queue,
    )
    assert counted == 1


@pytest.mark.parametrize("how", ["enqueue_in_session", "dl_enqueue"])
async def test_repeatable_read_never_joins_a_job_started_after_its_snapshot(
    how: str,
    database_dsn: str,
    db: asyncpg.Connection,
    lock_session: LockSession,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """Its snapshot still shows the job queued; the insert, not the snapshot, decides."""
    queued = await enqueue(sessions, settings, refresh())
    if how == "enqueue_in_session":
        async with sessions() as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            await session.execute(text("SELECT count(*) FROM dl_jobs"))  # the snapshot
            await start_ok(db, lock_session, queued.job_id)
            made = await enqueue_in_session(session, refresh(), settings)
            await session.commit()
        created, job_id = made.created, made.job_id
    else:
        connection = await asyncpg.connect(database_dsn)
        try:
            async with connection.transaction(isolation="repeatable_read"):
                await connection.fetchval("SELECT count(*) FROM dl_jobs")  # the snapshot
                await start_ok(db, lock_session, queued.job_id)
                row = await connection.fetchrow(SQL_JOIN, LOCK_KEY)
            created, job_id = row["created"], row["job_id"]
        finally:
            await connection.close()

    assert created is True
    assert job_id != queued.job_id
    assert [event for event, _ in await history(db, queued.job_id)] == ["queued", "started"]


async def test_concurrent_coalescing_enqueues_make_one_job_and_all_get_its_id(
    db: asyncpg.Connection, settings: Settings
) -> None:
    callers = 40
    wide_engine = create_engine(settings, pool_size=callers)
    wide_sessions = create_session_factory(wide_engine)
    try:
        results = await asyncio.gather(
            *(enqueue(wide_sessions, settings, refresh()) for _ in range(callers))
        )
    finally:
        await wide_engine.dispose()

    assert len({r.job_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert sum(r.coalesced is True for r in results) == callers - 1
    assert await counts(db) == (1, 1)
    events = [event for event, _ in await history(db, results[0].job_id)]
    assert events == ["queued"] + ["coalesced"] * (callers - 1)


async def test_items_of_one_call_coalesce_with_each_other(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        results = await enqueue_many_in_session(
            session,
            [refresh(), echo_spec(lock_key="other"), refresh(args={"n": 2}), refresh()],
            settings,
        )

    first, other, second, third = results
    assert (first.created, first.coalesced) == (True, False)
    assert (other.created, other.coalesced) == (True, msgspec.UNSET)
    assert (second.job_id, second.coalesced, second.differs) == (first.job_id, True, ["args"])
    assert (third.job_id, third.coalesced, third.differs) == (first.job_id, True, [])
    assert await counts(db) == (2, 2)


async def test_idempotency_key_is_checked_before_coalescing(
    db: asyncpg.Connection,
    lock_session: LockSession,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A known key answers with its job whatever its state; a joining trigger's key stays free."""
    keyed = await enqueue(sessions, settings, refresh(idempotency_key="refresh:1"))
    await start_ok(db, lock_session, keyed.job_id)

    again = await enqueue(sessions, settings, refresh(idempotency_key="refresh:1"))
    queued = await enqueue(sessions, settings, refresh())
    joined = await enqueue(sessions, settings, refresh(idempotency_key="refresh:2"))

    assert (again.job_id, again.status, again.created, again.coalesced) == (
        keyed.job_id,
        "running",
        False,
        False,
    )
    assert queued.created is True
    assert queued.job_id != keyed.job_id
    assert (joined.job_id, joined.coalesced) == (queued.job_id, True)
    keys = await db.fetch("SELECT idempotency_key FROM dl_jobs WHERE idempotency_key IS NOT NULL")
    assert [row["idempotency_key"] for row in keys] == ["refresh:1"]
    assert (await history(db, queued.job_id))[-1] == (
        "coalesced",
        {"differs": [], "idempotency_key": "refresh:2"},
    )
