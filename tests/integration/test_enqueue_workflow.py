"""enqueue_workflow_in_session(): a whole DAG in the caller's transaction, or nothing of it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.pgqueuer_tables import DISPATCH_CHANNEL
from app.domain.errors import InvalidJobError
from app.domain.workflows import WorkflowCreate
from app.jobs.enqueue import enqueue_workflow_in_session
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.waiting import wait_until

load_pipelines()  # the built-in `noop`
TABLES = ("dl_jobs", "dl_job_events", "dl_job_dependencies", "dl_workflows", "pgqueuer")


def workflow(*steps: tuple[str, list[str]], **job: Any) -> WorkflowCreate:
    body = {
        "name": "in-session",
        "steps": [
            {
                "name": name,
                "job": {"queue": "etl.default", "task": "noop", "lock_key": name, **job},
                "depends_on": parents,
            }
            for name, parents in steps
        ],
    }
    return msgspec.convert(body, WorkflowCreate)


DIAMOND = workflow(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]))


async def counts(db: asyncpg.Connection) -> dict[str, int]:
    return {table: int(await db.fetchval(f"SELECT count(*) FROM {table}")) for table in TABLES}


async def test_enqueue_workflow_rollback_leaves_nothing(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session:
        transaction = await session.begin()
        created = await enqueue_workflow_in_session(session, DIAMOND, settings)
        assert [s.status for s in created.steps] == ["queued", "waiting", "waiting", "waiting"]
        await transaction.rollback()

    assert await counts(db) == dict.fromkeys(TABLES, 0)


async def test_enqueue_workflow_commit_writes_steps_edges_one_dispatch_and_wakes_a_worker(
    db: asyncpg.Connection,
    database_dsn: str,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    notices: list[dict[str, Any]] = []
    listener = await asyncpg.connect(database_dsn)
    await listener.add_listener(DISPATCH_CHANNEL, lambda *a: notices.append(json.loads(a[3])))
    try:
        async with sessions() as session, session.begin():
            created = await enqueue_workflow_in_session(session, DIAMOND, settings)
        await wait_until(lambda: bool(notices), timeout=10, what="the dispatch notice")
    finally:
        await listener.close()

    assert await counts(db) == {
        "dl_jobs": 4,
        "dl_job_events": 4,
        "dl_job_dependencies": 4,
        "dl_workflows": 1,
        "pgqueuer": 1,
    }
    assert [n["queues"] for n in notices if n["kind"] == "dispatch"] == [{"etl.default": 1}]
    events = await db.fetch("SELECT event, count(*) AS n FROM dl_job_events GROUP BY event")
    assert {r["event"]: r["n"] for r in events} == {"queued": 1, "waiting": 3}
    assert {r["step_name"] for r in await db.fetch("SELECT step_name FROM dl_jobs")} == set("abcd")
    assert created.workflow_id == await db.fetchval("SELECT workflow_id FROM dl_workflows")


async def test_enqueue_workflow_bad_step_raises_naming_it_and_writes_nothing(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    bad = workflow(("a", []), ("b", ["a"]), task="no.such.task")

    async with sessions() as session, session.begin():
        with pytest.raises(InvalidJobError) as refused:
            await enqueue_workflow_in_session(session, bad, settings)

    assert refused.value.message.startswith("steps[0].job: unknown task 'no.such.task'")
    assert await counts(db) == dict.fromkeys(TABLES, 0)


async def test_enqueue_workflow_parent_outside_it_must_exist(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    unknown = uuid.uuid4()

    async with sessions() as session:
        transaction = await session.begin()
        with pytest.raises(InvalidJobError) as refused:
            await enqueue_workflow_in_session(
                session, workflow(("a", []), ("b", ["a", str(unknown)])), settings
            )
        await transaction.rollback()

    assert refused.value.message == (
        f"no job has the id {unknown} (field `steps[1].depends_on[1]`)"
    )
    assert await counts(db) == dict.fromkeys(TABLES, 0)
