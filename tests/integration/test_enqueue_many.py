"""enqueue_many_in_session(): many jobs in one statement, in the caller's transaction."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_session_factory
from app.domain.errors import InvalidJobError, UnknownTaskError
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_in_session, enqueue_many_in_session
from app.settings import Settings
from tests.support.specs import echo_spec as spec
from tests.support.waiting import wait_until

NOTIFY_CHANNEL = "ch_pgqueuer"
TABLES = ("dl_jobs", "dl_job_events", "pgqueuer", "pgqueuer_log")


async def counts(db: asyncpg.Connection) -> dict[str, int]:
    """Committed rows per table."""
    return {table: int(await db.fetchval(f"SELECT count(*) FROM {table}")) for table in TABLES}


def nothing() -> dict[str, int]:
    return dict.fromkeys(TABLES, 0)


def each(n: int) -> dict[str, int]:
    return dict.fromkeys(TABLES, n)


async def test_enqueue_many_rollback_leaves_nothing(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session:
        transaction = await session.begin()
        results = await enqueue_many_in_session(
            session, [spec(args={"n": i}) for i in range(5)], settings
        )
        assert [r.created for r in results] == [True] * 5
        await transaction.rollback()

    assert await counts(db) == nothing()


async def test_enqueue_many_commit_writes_one_of_each_per_job(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    specs = [
        spec(queue="etl.a", args={"n": 0}, priority=0),
        spec(queue="etl.b", args={"n": 1, "tags": ["x", "y"]}, priority=250, lock_key="c-2"),
        spec(queue="etl.c", args={}, priority=10_000, lease_ttl_sec=30),
    ]
    async with sessions() as session, session.begin():
        results = await enqueue_many_in_session(session, specs, settings)

    assert [r.created for r in results] == [True, True, True]
    assert [r.status for r in results] == ["queued"] * 3
    assert len({r.job_id for r in results}) == 3
    assert await counts(db) == each(3)
    for result, item in zip(results, specs, strict=True):
        job = await db.fetchrow("SELECT * FROM dl_jobs WHERE job_id = $1", result.job_id)
        assert job["status"] == "queued"
        assert job["queue"] == item.queue
        assert job["task"] == "test.echo"
        assert job["lock_key"] == item.lock_key
        assert json.loads(job["args"]) == item.args
        assert job["priority"] == item.priority
        assert job["attempt"] == 0
        expected_ttl = item.lease_ttl_sec or settings.dl_default_lease_ttl_sec
        assert job["lease_ttl_sec"] == expected_ttl
        dispatch = await db.fetchrow("SELECT * FROM pgqueuer WHERE id = $1", job["pgq_job_id"])
        assert dispatch is not None
        assert bytes(dispatch["payload"]) == result.job_id.bytes
        assert dispatch["entrypoint"] == item.queue
        assert dispatch["priority"] == -item.priority
        assert dispatch["status"] == "queued"
        logged = await db.fetch(
            "SELECT status::text, entrypoint, priority FROM pgqueuer_log WHERE job_id = $1",
            job["pgq_job_id"],
        )
        assert [dict(r) for r in logged] == [
            {"status": "queued", "entrypoint": item.queue, "priority": -item.priority}
        ]
        events = await db.fetch(
            "SELECT event, attempt FROM dl_job_events WHERE job_id = $1", result.job_id
        )
        assert [(e["event"], e["attempt"]) for e in events] == [("queued", 0)]


async def test_enqueue_many_results_are_in_input_order(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    specs = [spec(args={"i": i}, lock_key=f"k-{i % 3}") for i in range(20)]
    async with sessions() as session, session.begin():
        results = await enqueue_many_in_session(session, specs, settings)

    rows = await db.fetch("SELECT job_id, args FROM dl_jobs")
    index_of = {row["job_id"]: json.loads(row["args"])["i"] for row in rows}
    assert [index_of[r.job_id] for r in results] == list(range(20))


async def test_enqueue_many_same_key_twice_in_one_call_makes_one_job(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        results = await enqueue_many_in_session(
            session,
            [
                spec(idempotency_key="dup", args={"which": "first"}),
                spec(args={"which": "other"}),
                # The same request again (a different one is a conflict: test_idempotency_rules).
                spec(idempotency_key="dup", args={"which": "first"}),
            ],
            settings,
        )

    first, other, second = results
    assert (first.created, other.created, second.created) == (True, True, False)
    assert second.job_id == first.job_id
    assert second.status == "queued"
    assert other.job_id != first.job_id
    assert await counts(db) == each(2)
    row = await db.fetchrow("SELECT queue, args FROM dl_jobs WHERE idempotency_key = 'dup'")
    assert row["queue"] == "etl.test"
    assert json.loads(row["args"]) == {"which": "first"}


async def test_enqueue_many_existing_key_returns_current_job_and_writes_nothing_for_it(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        earlier = await enqueue_in_session(session, spec(idempotency_key="old"), settings)
    await db.execute(
        "UPDATE dl_jobs SET status = 'succeeded', attempt = 1, finished_at = now()"
        " WHERE job_id = $1",
        earlier.job_id,
    )
    before = await counts(db)

    async with sessions() as session, session.begin():
        results = await enqueue_many_in_session(
            session,
            # The same request as the earlier one (a different one: test_idempotency_rules).
            [spec(args={"new": 1}), spec(idempotency_key="old")],
            settings,
        )

    fresh, existing = results
    assert fresh.created is True
    assert existing.created is False
    assert existing.job_id == earlier.job_id
    assert existing.status == "succeeded"
    assert await counts(db) == {table: before[table] + 1 for table in TABLES}
    old = await db.fetchrow("SELECT args, status FROM dl_jobs WHERE job_id = $1", earlier.job_id)
    assert json.loads(old["args"]) == {"n": 1}
    assert old["status"] == "succeeded"
    events = await db.fetch("SELECT event FROM dl_job_events WHERE job_id = $1", earlier.job_id)
    assert [e["event"] for e in events] == ["queued"]


INVALID_ITEMS: dict[str, tuple[JobCreate, type[Exception], str]] = {
    "unknown-task": (spec(task="no.such.task"), UnknownTaskError, r"no\.such\.task"),
    "nul-in-args-value": (spec(args={"a": "x\x00y"}), InvalidJobError, "NUL"),
    "nul-in-args-key": (spec(args={"a\x00": 1}), InvalidJobError, "NUL"),
    "priority-out-of-range": (spec(priority=10_001), InvalidJobError, "priority"),
    "blank-lock_key": (spec(lock_key="  "), InvalidJobError, "lock_key"),
}


@pytest.mark.parametrize("position", [0, 2, 4])
@pytest.mark.parametrize(
    ("bad", "error", "pattern"), INVALID_ITEMS.values(), ids=list(INVALID_ITEMS)
)
async def test_enqueue_many_one_invalid_item_rejects_all_and_names_it(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    position: int,
    bad: JobCreate,
    error: type[Exception],
    pattern: str,
) -> None:
    specs = [spec(args={"i": i}, idempotency_key=f"k-{i}") for i in range(5)]
    specs[position] = bad

    async with sessions() as session, session.begin():
        with pytest.raises(error, match=pattern) as raised:
            await enqueue_many_in_session(session, specs, settings)
        # The caller's transaction is still usable and commits: the call added nothing to it.

    message = str(raised.value)
    assert message.startswith(f"jobs[{position}]: "), message
    for other in {0, 2, 4} - {position}:
        assert f"jobs[{other}]" not in message
    assert await counts(db) == nothing()


async def test_enqueue_in_session_errors_do_not_name_an_item(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        with pytest.raises(UnknownTaskError) as raised:
            await enqueue_in_session(session, spec(task="no.such.task"), settings)
    assert "jobs[" not in str(raised.value)


async def test_enqueue_many_available_at_sets_execute_after(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    naive_later = (datetime.now(UTC) + timedelta(hours=3)).replace(tzinfo=None)
    async with sessions() as session, session.begin():
        delayed, now_job, naive = await enqueue_many_in_session(
            session,
            [spec(available_at=later), spec(), spec(available_at=naive_later)],
            settings,
        )

    async def stored(job_id: uuid.UUID) -> asyncpg.Record:
        row: asyncpg.Record = await db.fetchrow(
            "SELECT j.available_at, q.execute_after, now() AS db_now FROM dl_jobs j"
            " JOIN pgqueuer q ON q.id = j.pgq_job_id WHERE j.job_id = $1",
            job_id,
        )
        return row

    row = await stored(delayed.job_id)
    assert abs(row["available_at"] - later) < timedelta(seconds=1)
    assert abs(row["execute_after"] - later) < timedelta(seconds=1)
    row = await stored(naive.job_id)
    assert abs(row["execute_after"] - naive_later.replace(tzinfo=UTC)) < timedelta(seconds=1)
    row = await stored(now_job.job_id)
    assert row["execute_after"] <= row["db_now"]
    assert row["db_now"] - row["execute_after"] < timedelta(minutes=5)


async def test_enqueue_many_empty_list_returns_empty_and_writes_nothing(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        assert await enqueue_many_in_session(session, [], settings) == []

    assert await counts(db) == nothing()


async def test_enqueue_many_thousand_jobs_in_one_call(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    specs = [
        spec(
            args={"i": i, "nested": {"list": [i, str(i)]}},
            lock_key=f"customer-{i % 17}",
            priority=i % 7,
            idempotency_key=f"bulk-{i}" if i % 2 else None,
        )
        for i in range(1000)
    ]
    async with sessions() as session, session.begin():
        results = await enqueue_many_in_session(session, specs, settings)

    assert len(results) == 1000
    assert all(r.created for r in results)
    assert len({r.job_id for r in results}) == 1000
    assert await counts(db) == each(1000)
    mismatched = await db.fetchval(
        "SELECT count(*) FROM dl_jobs j LEFT JOIN pgqueuer q ON q.id = j.pgq_job_id"
        " WHERE q.id IS NULL OR q.payload <> uuid_send(j.job_id) OR q.priority <> -j.priority"
        " OR q.entrypoint <> j.queue"
    )
    assert mismatched == 0
    rows = await db.fetch("SELECT job_id, args FROM dl_jobs")
    index_of = {row["job_id"]: json.loads(row["args"])["i"] for row in rows}
    assert [index_of[r.job_id] for r in results] == list(range(1000))


async def test_enqueue_many_concurrent_calls_sharing_keys_make_one_job_per_key(
    db: asyncpg.Connection, settings: Settings, engine: AsyncEngine
) -> None:
    sessions = create_session_factory(engine)
    keys = [f"shared-{i}" for i in range(10)]

    async def call(offset: int) -> list[tuple[str, uuid.UUID, bool]]:
        ordered = keys[offset:] + keys[:offset]
        async with sessions() as session, session.begin():
            results = await enqueue_many_in_session(
                session, [spec(idempotency_key=k) for k in ordered], settings
            )
        return [(k, r.job_id, r.created) for k, r in zip(ordered, results, strict=True)]

    calls = await asyncio.gather(*(call(offset) for offset in range(0, 10, 2)))

    by_key: dict[str, set[uuid.UUID]] = {}
    created: dict[str, int] = {}
    for answer in calls:
        for key, job_id, was_created in answer:
            by_key.setdefault(key, set()).add(job_id)
            created[key] = created.get(key, 0) + int(was_created)
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert created == dict.fromkeys(keys, 1)
    assert await counts(db) == each(10)


async def test_enqueue_many_overlapping_keys_in_different_orders_do_not_deadlock(
    db: asyncpg.Connection, settings: Settings, engine: AsyncEngine
) -> None:
    """Two bulk calls naming the same keys in different orders must both succeed.

    A third transaction holds key "c" uncommitted, so each call stops on "c" after writing
    its first key: one holds "a", the other "b". When "c" is released, a call that writes
    keys in input order then waits for the other's key in both directions: a deadlock,
    which PostgreSQL breaks by failing one call (over HTTP: a 500 for a valid request).
    Writing keys in a fixed order (for instance sorted) cannot deadlock.
    """
    sessions = create_session_factory(engine)
    holder = sessions()
    holder_tx = await holder.begin()
    await enqueue_many_in_session(holder, [spec(idempotency_key="c")], settings)

    async def call(keys: list[str]) -> list[uuid.UUID]:
        async with sessions() as session, session.begin():
            results = await enqueue_many_in_session(
                session, [spec(idempotency_key=k) for k in keys], settings
            )
        return [r.job_id for r in results]

    first = asyncio.create_task(call(["a", "c", "b"]))
    second = asyncio.create_task(call(["b", "c", "a"]))
    try:

        async def both_waiting() -> bool:
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return bool(waiting >= 2)

        waiting: bool = await wait_until(
            both_waiting, timeout=30, what="both bulk calls waiting on key c"
        )
        assert waiting
        await holder_tx.commit()
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
    finally:
        await holder.close()

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert errors == [], errors
    ids_first, ids_second = outcomes
    assert isinstance(ids_first, list)
    assert isinstance(ids_second, list)
    assert dict(zip(["a", "c", "b"], ids_first, strict=True)) == dict(
        zip(["b", "c", "a"], ids_second, strict=True)
    )
    assert await counts(db) == each(3)
