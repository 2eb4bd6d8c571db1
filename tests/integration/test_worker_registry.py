"""The worker registry (dl_workers) on a real database: what a worker writes at start and on
refresh, what readers see within the liveness window, and what retention deletes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import __version__
from app.db.connections import PGQUEUER, application_name
from app.domain.errors import UnknownTaskError
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_in_session
from app.jobs.leadership import LEADER_LOCK_ID
from app.jobs.membership import Membership, MembershipConfig
from app.jobs.queue_service import QueueService
from app.jobs.wake_gate import WakeGate
from app.jobs.worker_registry import WorkerRegistry, unserved_warning
from app.pipelines import registry as pipeline_registry
from app.settings import Settings
from tests.support.waiting import wait_until
from worker.maintenance.retention import Retention, RetentionConfig

LIVE = timedelta(seconds=90)
TASKS: dict[str, Any] = {"load.rates": {"type": "object"}, "noop": None}


def membership(sessions: async_sessionmaker[AsyncSession], worker_id: str = "w1") -> Membership:
    queues = {"etl.a": 2}
    return Membership(
        sessions, worker_id, queues, WakeGate(worker_id, queues), MembershipConfig(), tasks=TASKS
    )


async def add_worker(
    db: asyncpg.Connection,
    worker_id: str,
    *,
    queues: dict[str, int],
    tasks: dict[str, Any] | None = None,
    seen_ago: timedelta = timedelta(0),
) -> None:
    """A dl_workers row as a worker writes it, last seen `seen_ago`."""
    await db.execute(
        "INSERT INTO dl_workers (worker_id, host, pid, queues, version, tasks, last_seen_at)"
        " VALUES ($1, 'h', 1, $2::jsonb, '9.9', $3::jsonb, now() - $4::interval)",
        worker_id,
        json.dumps(queues),
        json.dumps(tasks or {}),
        seen_ago,
    )


async def test_membership_register_writes_version_and_tasks_refresh_leaves_them(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    member = membership(sessions)
    await member.register()
    row = await db.fetchrow("SELECT * FROM dl_workers WHERE worker_id = 'w1'")
    assert (row["version"], json.loads(row["tasks"]), json.loads(row["queues"])) == (
        __version__,
        TASKS,
        {"etl.a": 2},
    )
    # A refresh only says the worker lives: a registry changed meanwhile stays as it is.
    await db.execute(
        "UPDATE dl_workers SET tasks = '{\"marker\": null}',"
        " last_seen_at = now() - interval '1 minute'"
    )
    await member.run_once()
    row = await db.fetchrow(
        "SELECT tasks, last_seen_at > now() - interval '10 s' AS fresh FROM dl_workers"
    )
    assert json.loads(row["tasks"]) == {"marker": None}
    assert row["fresh"] is True


async def test_membership_refresh_registers_again_when_its_row_was_deleted(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    member = membership(sessions)
    await member.register()
    await db.execute("DELETE FROM dl_workers")

    await member.run_once()

    row = await db.fetchrow("SELECT version, tasks FROM dl_workers WHERE worker_id = 'w1'")
    assert row is not None
    assert (row["version"], json.loads(row["tasks"])) == (__version__, TASKS)


async def test_membership_leave_deletes_the_row(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    member = membership(sessions)
    await member.register()
    await member.leave()
    assert await db.fetchval("SELECT count(*) FROM dl_workers") == 0


async def test_registry_lists_only_workers_seen_within_the_liveness_window(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await add_worker(db, "live-b", queues={"etl.a": 1}, tasks={"t.one": None})
    await add_worker(
        db, "live-a", queues={"etl.a": 2, "etl.b": 0}, tasks={"t.one": {"type": "object"}}
    )
    await add_worker(
        db, "dead", queues={"etl.c": 1}, tasks={"t.dead": None}, seen_ago=timedelta(minutes=2)
    )
    registry = WorkerRegistry(sessions, LIVE)

    listed = (await registry.list_workers()).workers
    tasks = (await registry.list_tasks()).tasks

    assert [w.worker_id for w in listed] == ["live-a", "live-b"]
    assert [(q.queue, q.concurrency) for q in listed[0].queues] == [("etl.a", 2), ("etl.b", 0)]
    assert (listed[0].version, listed[0].tasks, listed[0].leader) == ("9.9", ["t.one"], False)
    assert [(t.task, t.workers, t.queues) for t in tasks] == [("t.one", 2, ["etl.a", "etl.b"])]
    assert await registry.live_task_names() == {"t.one"}
    async with sessions() as session:
        assert await registry.consumers_in_session(session) == {"etl.a": 2, "etl.b": 1}


async def test_registry_marks_the_worker_whose_pgqueuer_session_holds_the_leader_lock(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], database_dsn: str
) -> None:
    await add_worker(db, "w-lead", queues={"etl.a": 1})
    await add_worker(db, "w-other", queues={"etl.a": 1})
    leader = await asyncpg.connect(
        database_dsn, server_settings={"application_name": application_name(PGQUEUER, "w-lead")}
    )
    try:
        assert await leader.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_ID)
        listed = (await WorkerRegistry(sessions, LIVE).list_workers()).workers
    finally:
        await leader.close()

    assert {w.worker_id: w.leader for w in listed} == {"w-lead": True, "w-other": False}


async def test_unserved_warnings_come_from_a_view_kept_for_the_ttl(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    registry = WorkerRegistry(sessions, LIVE, live_queues_ttl_sec=1.0)
    assert await registry.unserved_warnings(["etl.a", "etl.a", "etl.b"]) == [
        unserved_warning("etl.a"),
        unserved_warning("etl.b"),
    ]
    await add_worker(db, "w1", queues={"etl.a": 1})
    # Read again only once the view is older than its TTL: triggers cost no query each.
    assert await registry.unserved_warnings(["etl.a"]) == [unserved_warning("etl.a")]

    async def served() -> bool:
        return await registry.unserved_warnings(["etl.a"]) == []

    await wait_until(served, timeout=10, what="the served queues read again")
    assert unserved_warning("etl.a") == (
        "no live worker serves queue 'etl.a'; the job waits until one does"
    )


async def test_queue_list_counts_consumers_and_flags_a_backlog_nobody_serves(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await add_worker(db, "w1", queues={"etl.served": 1})
    await add_worker(db, "gone", queues={"etl.orphan": 1}, seen_ago=timedelta(hours=1))
    async with sessions() as session, session.begin():
        for queue in ("etl.served", "etl.orphan"):
            spec = JobCreate(queue=queue, task="noop", args={}, lock_key=f"k-{queue}")
            await enqueue_in_session(session, spec, settings)

    views = {q.queue: q for q in (await QueueService(sessions, settings).list_queues()).queues}
    one = await QueueService(sessions, settings).get("etl.served")

    assert (views["etl.served"].consumers, views["etl.served"].unserved) == (1, False)
    assert (views["etl.orphan"].consumers, views["etl.orphan"].unserved) == (0, True)
    assert (one.consumers, one.unserved) == (1, False)


async def test_retention_deletes_worker_rows_long_expired_only(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await add_worker(db, "long-gone", queues={"etl.a": 1}, seen_ago=timedelta(hours=2))
    await add_worker(db, "recently-gone", queues={"etl.a": 1}, seen_ago=timedelta(minutes=10))
    await add_worker(db, "live", queues={"etl.a": 1})
    retention = Retention(sessions, RetentionConfig())

    result = await retention.run_once()

    assert result.workers == 1
    rows = await db.fetch("SELECT worker_id FROM dl_workers ORDER BY worker_id")
    assert [row["worker_id"] for row in rows] == ["live", "recently-gone"]


@pytest.fixture
def no_local_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as an application that only enqueues: no pipeline loaded."""
    monkeypatch.setattr(pipeline_registry, "_registry", {})


@pytest.mark.usefixtures("no_local_pipelines")
async def test_enqueue_without_pipelines_checks_tasks_of_live_workers(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await add_worker(db, "w1", queues={"etl.a": 1}, tasks={"remote.task": None})
    await add_worker(
        db, "dead", queues={"etl.a": 1}, tasks={"dead.task": None}, seen_ago=timedelta(hours=1)
    )

    async with sessions() as session, session.begin():
        created = await enqueue_in_session(
            session,
            JobCreate(queue="etl.a", task="remote.task", args={"x": 1}, lock_key="k"),
            settings,
        )
    assert created.created is True
    for task in ("dead.task", "no.such.task"):
        async with sessions() as session, session.begin():
            with pytest.raises(UnknownTaskError) as raised:
                await enqueue_in_session(
                    session, JobCreate(queue="etl.a", task=task, args={}, lock_key="k2"), settings
                )
        assert str(raised.value) == (
            f"unknown task {task!r} (registered by live workers: remote.task;"
            " this process loaded no pipelines)"
        )
    assert await db.fetchval("SELECT count(*) FROM dl_jobs") == 1
