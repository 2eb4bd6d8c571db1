"""An idempotency_key finds its job only for the same request; the service's names are its own.

Through the in-session helpers (the HTTP routes are covered in tests/e2e/api): the same
request after defaults finds the first job, a different one is IdempotencyConflictError
naming the key and the first job (and, in a call of many, the items), jobs from before
fingerprints keep the old rule, and `dl:` keys and producers are refused to clients.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.errors import IdempotencyConflictError, InvalidJobError
from app.domain.views import JobCreated
from app.jobs.enqueue import enqueue_in_session, enqueue_many_in_session
from app.settings import Settings
from tests.support.specs import echo_spec as spec

TABLES = ("dl_jobs", "dl_job_events", "pgqueuer")
AT = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


async def counts(db: asyncpg.Connection) -> dict[str, int]:
    """Committed rows per table."""
    return {table: int(await db.fetchval(f"SELECT count(*) FROM {table}")) for table in TABLES}


async def enqueue(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, **fields: Any
) -> JobCreated:
    """One job through enqueue_in_session(), committed."""
    async with sessions() as session, session.begin():
        return await enqueue_in_session(session, spec(**fields), settings)


# The first request, then requests that are the same once defaults are applied.
FIRST: dict[str, Any] = {"args": {"a": 1, "b": {"x": [1, 2], "y": None}}, "available_at": AT}
SAME_REQUESTS = {
    "identical": FIRST,
    "defaults-spelled-out": {
        **FIRST,
        "priority": 100,
        "max_attempts": 5,
        "lease_ttl_sec": 60,  # the settings' DL_DEFAULT_LEASE_TTL_SEC
        "partition_key": None,
        "producer": None,
    },
    "args-keys-reordered": {**FIRST, "args": {"b": {"y": None, "x": [1, 2]}, "a": 1}},
    "same-instant-other-zone": {
        **FIRST,
        "available_at": AT.astimezone(timezone(timedelta(hours=5, minutes=30))),
    },
    "naive-read-as-utc": {**FIRST, "available_at": AT.replace(tzinfo=None)},
}


@pytest.mark.parametrize("again", SAME_REQUESTS.values(), ids=SAME_REQUESTS)
async def test_idempotency_same_request_after_defaults_finds_first_job(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    again: dict[str, Any],
) -> None:
    assert settings.dl_default_lease_ttl_sec == 60
    first = await enqueue(sessions, settings, idempotency_key="same", **FIRST)

    second = await enqueue(sessions, settings, idempotency_key="same", **again)

    assert second == JobCreated(job_id=first.job_id, status="queued", created=False)
    assert await counts(db) == dict.fromkeys(TABLES, 1)


DIFFERENT_REQUESTS = {
    "args-value": {**FIRST, "args": {"a": 2, "b": {"x": [1, 2], "y": None}}},
    "args-int-vs-float": {**FIRST, "args": {"a": 1.0, "b": {"x": [1, 2], "y": None}}},
    "queue": {**FIRST, "queue": "etl.other"},
    "task": {**FIRST, "task": "noop", "args": {}},
    "lock_key": {**FIRST, "lock_key": "customer-2"},
    "partition_key": {**FIRST, "partition_key": "p"},
    "priority": {**FIRST, "priority": 99},
    "available_at-later": {**FIRST, "available_at": AT + timedelta(microseconds=1)},
    "available_at-omitted": {"args": FIRST["args"]},  # "now" is not the time asked for
    "max_attempts": {**FIRST, "max_attempts": 4},
    "lease_ttl_sec": {**FIRST, "lease_ttl_sec": 61},
    "producer": {**FIRST, "producer": "someone"},
    "consumer_group": {**FIRST, "consumer_group": "g"},
}


@pytest.mark.parametrize("other", DIFFERENT_REQUESTS.values(), ids=DIFFERENT_REQUESTS)
async def test_idempotency_different_request_conflicts_naming_key_and_first_job(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    other: dict[str, Any],
) -> None:
    first = await enqueue(sessions, settings, idempotency_key="taken", **FIRST)

    async with sessions() as session, session.begin():
        with pytest.raises(IdempotencyConflictError) as raised:
            await enqueue_in_session(session, spec(idempotency_key="taken", **other), settings)

    message = raised.value.message
    assert message.startswith(f"idempotency_key 'taken' is already used by job {first.job_id},")
    assert raised.value.job_id == first.job_id
    # The caller's transaction committed: the refused job wrote nothing in it.
    assert await counts(db) == dict.fromkeys(TABLES, 1)


async def test_idempotency_bulk_item_conflicting_with_existing_job_names_item_and_job(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first = await enqueue(sessions, settings, idempotency_key="old", args={"n": 1})
    items = [spec(args={"n": 0}), spec(idempotency_key="old", args={"n": 1}), spec()]
    items.append(spec(idempotency_key="old", args={"n": 2}))

    async with sessions() as session:
        await session.begin()
        with pytest.raises(IdempotencyConflictError) as raised:
            await enqueue_many_in_session(session, items, settings)
        await session.rollback()  # other items may have been written: the caller rolls back

    assert raised.value.message.startswith(
        f"jobs[3]: idempotency_key 'old' is already used by job {first.job_id},"
    )
    assert await counts(db) == dict.fromkeys(TABLES, 1)


async def test_idempotency_two_items_of_one_call_same_key_different_requests_name_both(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    items = [
        spec(args={"n": 0}),
        spec(idempotency_key="mine", args={"n": 1}),
        spec(idempotency_key="mine", args={"n": 1}),  # the same request: fine
        spec(idempotency_key="mine", args={"n": 2}),
    ]

    async with sessions() as session:
        await session.begin()
        with pytest.raises(IdempotencyConflictError) as raised:
            await enqueue_many_in_session(session, items, settings)
        await session.rollback()  # other items may have been written: the caller rolls back

    message = raised.value.message
    assert message.startswith(
        f"jobs[3]: idempotency_key 'mine' is already used by jobs[1] (job {raised.value.job_id}),"
    ), message
    assert await counts(db) == dict.fromkeys(TABLES, 0)


async def test_idempotency_job_from_before_fingerprints_keeps_the_old_rule(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """A job written before migration 0009 has no fingerprint: its key finds it, as before."""
    first = await enqueue(sessions, settings, idempotency_key="legacy", args={"n": 1})
    await db.execute(
        "UPDATE dl_jobs SET request_fingerprint = NULL WHERE job_id = $1", first.job_id
    )

    again = await enqueue(sessions, settings, idempotency_key="legacy", args={"n": 2})

    assert again == JobCreated(job_id=first.job_id, status="queued", created=False)
    assert await counts(db) == dict.fromkeys(TABLES, 1)


RESERVED = {
    "key": ("idempotency_key", "dl:schedule:x"),
    "key-upper-case": ("idempotency_key", "DL:anything"),
    "key-leading-blank": ("idempotency_key", "  dl:anything"),
    "producer": ("producer", "dl:schedule:nightly"),
}


@pytest.mark.parametrize(("field", "value"), RESERVED.values(), ids=RESERVED)
async def test_idempotency_reserved_namespace_refused_to_clients_allowed_internally(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    field: str,
    value: str,
) -> None:
    async with sessions() as session, session.begin():
        with pytest.raises(InvalidJobError) as single:
            await enqueue_in_session(session, spec(**{field: value}), settings)
        with pytest.raises(InvalidJobError) as bulk:
            await enqueue_many_in_session(session, [spec(), spec(**{field: value})], settings)
    assert await counts(db) == dict.fromkeys(TABLES, 0)

    assert f"(field `{field}`)" in single.value.message
    assert "reserved" in single.value.message
    assert bulk.value.message.startswith("jobs[1]: ")
    assert f"(field `{field}`)" in bulk.value.message

    async with sessions() as session, session.begin():
        internal = await enqueue_in_session(
            session, spec(**{field: value}), settings, internal=True
        )
    assert internal.created is True
    assert await db.fetchval(f"SELECT {field} FROM dl_jobs") == value


async def test_idempotency_reserved_prefix_only_at_the_start(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    created = await enqueue(
        sessions, settings, idempotency_key=f"order:dl:{uuid.uuid4()}", producer="app-dl:1"
    )

    assert created.created is True
