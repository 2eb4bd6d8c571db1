"""A workflow's idempotency_key: the same request again finds the workflow it created, a
different one is a conflict, and two at once under one key make one workflow."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.errors import WorkflowKeyConflictError
from app.domain.spec import DEFAULT_MAX_ATTEMPTS
from app.domain.workflows import WorkflowCreate, WorkflowCreated
from app.jobs.enqueue import enqueue_workflow_in_session
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.waiting import wait_until

load_pipelines()  # the built-in `noop`


def workflow(key: str | None, *, sleep: float = 0) -> WorkflowCreate:
    job: dict[str, Any] = {"queue": "etl.default", "task": "noop", "args": {"sleep": sleep}}
    body = {
        "name": "keyed",
        "idempotency_key": key,
        "steps": [
            {"name": "a", "job": {**job, "lock_key": "a"}},
            {"name": "b", "job": {**job, "lock_key": "b"}, "depends_on": ["a"]},
        ],
    }
    return msgspec.convert(body, WorkflowCreate)


async def create(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, spec: WorkflowCreate
) -> WorkflowCreated:
    async with sessions() as session, session.begin():
        return await enqueue_workflow_in_session(session, spec, settings)


async def test_the_same_request_again_finds_the_workflow_it_created(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first = await create(sessions, settings, workflow("nightly-1"))
    # Keys in another order, defaults spelled out: the same request.
    again = msgspec.convert(
        {
            "steps": [
                {"job": {"args": {"sleep": 0}, "lock_key": "a", "task": "noop",
                         "queue": "etl.default", "max_attempts": DEFAULT_MAX_ATTEMPTS},
                 "name": "a", "depends_on": []},
                {"job": {"queue": "etl.default", "task": "noop", "args": {"sleep": 0},
                         "lock_key": "b"},
                 "name": "b", "depends_on": ["a"], "run_after": "succeeded"},
            ],
            "idempotency_key": "nightly-1",
            "name": "keyed",
        },
        WorkflowCreate,
    )  # fmt: skip

    found = await create(sessions, settings, again)

    assert first.created
    assert not found.created
    assert found.workflow_id == first.workflow_id
    assert [(s.name, s.job_id, s.status) for s in found.steps] == [
        (s.name, s.job_id, s.status) for s in first.steps
    ]
    assert await db.fetchval("SELECT count(*) FROM dl_workflows") == 1
    assert await db.fetchval("SELECT count(*) FROM dl_jobs") == 2


async def test_a_different_request_under_the_key_is_a_conflict_naming_the_workflow(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first = await create(sessions, settings, workflow("nightly-2"))

    with pytest.raises(WorkflowKeyConflictError) as raised:
        await create(sessions, settings, workflow("nightly-2", sleep=1))

    assert raised.value.workflow_id == first.workflow_id
    assert "idempotency_key 'nightly-2' is already used by workflow" in str(raised.value)
    assert await db.fetchval("SELECT count(*) FROM dl_workflows") == 1
    assert await db.fetchval("SELECT count(*) FROM dl_jobs") == 2


async def test_without_a_key_each_request_makes_a_workflow(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first = await create(sessions, settings, workflow(None))
    second = await create(sessions, settings, workflow(None))

    assert first.workflow_id != second.workflow_id
    assert await db.fetchval("SELECT count(*) FROM dl_workflows") == 2


async def second_request_waiting_on_the_first(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    first_commits: bool,
) -> tuple[WorkflowCreated, WorkflowCreated]:
    """The first request holds its transaction open with the key written; the second is
    sent under the same key and, once PostgreSQL shows it waiting on the first, the first
    commits or rolls back. Both answers."""
    async with sessions() as first_session:
        transaction = await first_session.begin()
        first = await enqueue_workflow_in_session(first_session, workflow("race"), settings)
        second_task = asyncio.ensure_future(
            create(sessions, settings, workflow("race", sleep=0 if first_commits else 1))
        )

        async def second_waits() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
            )

        await wait_until(second_waits, timeout=10, what="the second request to wait on the key")
        assert not second_task.done()
        await (transaction.commit() if first_commits else transaction.rollback())
    return first, await asyncio.wait_for(second_task, 10)


async def test_two_requests_at_once_under_one_key_make_one_workflow(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    first, second = await second_request_waiting_on_the_first(
        db, sessions, settings, first_commits=True
    )

    assert second.workflow_id == first.workflow_id
    assert not second.created
    assert await db.fetchval("SELECT count(*) FROM dl_workflows") == 1
    assert await db.fetchval("SELECT count(*) FROM dl_jobs") == 2


async def test_a_key_whose_first_request_rolled_back_goes_to_the_request_waiting_on_it(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    # The waiting request differs from the rolled-back one: it takes the key, no conflict.
    first, second = await second_request_waiting_on_the_first(
        db, sessions, settings, first_commits=False
    )

    assert second.created
    assert second.workflow_id != first.workflow_id
    assert await db.fetchval("SELECT workflow_id FROM dl_workflows") == second.workflow_id
    assert await db.fetchval("SELECT count(*) FROM dl_jobs") == 2
