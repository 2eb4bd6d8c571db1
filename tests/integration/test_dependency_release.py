"""The release trigger (app.db.dependency_functions) on a real database: a dependent waits
without a dispatch, is released exactly once when its parents succeeded, however they end
(a worker's finish, the reaper, a cancel), and is canceled, or waits again, as they do."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import jobs as job_rows
from app.domain.attempts import FinishRequest
from app.domain.errors import DependencyNotMetError, InvalidJobError
from app.domain.spec import JobCreate
from app.domain.states import JobEvent, JobStatus
from app.jobs.manager import JobManager
from app.jobs.service import JobService
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.attempts import start_attempt
from tests.support.waiting import wait_until

load_pipelines()  # the built-in `noop`


def spec(**fields: Any) -> JobCreate:
    return JobCreate(queue="etl.default", task="noop", lock_key=f"k-{uuid.uuid4().hex}", **fields)


async def trigger(service: JobService, **fields: Any) -> uuid.UUID:
    [created] = await service.trigger_many([spec(**fields)])
    return created.job_id


async def row(db: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record:
    found = await db.fetchrow("SELECT * FROM dl_jobs WHERE job_id = $1", job_id)
    assert found is not None
    return found


async def dispatches(db: asyncpg.Connection, job_id: uuid.UUID) -> int:
    """pgqueuer rows (queued or picked) whose payload is this job."""
    return int(
        await db.fetchval("SELECT count(*) FROM pgqueuer WHERE payload = uuid_send($1)", job_id)
    )


async def events(db: asyncpg.Connection, job_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT event, details FROM dl_job_events WHERE job_id = $1 ORDER BY id", job_id
    )
    return [
        {"event": r["event"], "details": r["details"] and json.loads(r["details"])} for r in rows
    ]


async def finish(
    db: asyncpg.Connection, settings: Settings, job_id: uuid.UUID, status: JobStatus
) -> None:
    """Start the job and end it with `status`, through the worker's own statements."""
    manager = JobManager(settings.pg_schema_queue)
    attempt = await start_attempt(db, manager, job_id, "worker-t")
    event = {JobStatus.SUCCEEDED: JobEvent.SUCCEEDED, JobStatus.FAILED: JobEvent.FAILED}[status]
    written = await manager.finish_many(
        db, [FinishRequest(job_id, attempt, status, event)], "worker-t"
    )
    assert written == {job_id}


async def test_dependency_child_waits_without_dispatch_then_runs_when_its_parent_succeeds(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    parent = await trigger(service)
    [created] = await service.trigger_many([spec(depends_on=[parent])])
    child = created.job_id

    assert created.status == "waiting"
    waiting = await row(db, child)
    assert (waiting["status"], waiting["pgq_job_id"], waiting["depends_on"]) == (
        "waiting",
        None,
        [parent],
    )
    assert await dispatches(db, child) == 0
    assert (await row(db, parent))["has_dependents"] is True

    await finish(db, settings, parent, JobStatus.SUCCEEDED)

    released = await row(db, child)
    assert released["status"] == "queued"
    assert await dispatches(db, child) == 1
    assert await db.fetchval(
        "SELECT payload = uuid_send($1) FROM pgqueuer WHERE id = $2", child, released["pgq_job_id"]
    )
    history = await events(db, child)
    assert [e["event"] for e in history] == ["waiting", "queued"]
    assert history[1]["details"]["after"] == str(parent)


async def test_dependency_fan_in_is_released_once_when_its_last_two_parents_finish_at_once(
    service: JobService, db: asyncpg.Connection, database_dsn: str, settings: Settings
) -> None:
    """Two finishes in open transactions on two connections: the child's row lock makes the
    second wait for the first's commit and see it, so the child is released, and once.

    Without the lock each would read the other's parent as still running and neither would
    release it.
    """
    manager = JobManager(settings.pg_schema_queue)
    other = await asyncpg.connect(database_dsn)
    try:
        for _ in range(3):
            first, second = await trigger(service), await trigger(service)
            [created] = await service.trigger_many([spec(depends_on=[first, second])])
            child = created.job_id
            attempts = [
                await start_attempt(db, manager, first, "worker-a"),
                await start_attempt(db, manager, second, "worker-b"),
            ]
            requests = [
                FinishRequest(job_id, attempt, JobStatus.SUCCEEDED, JobEvent.SUCCEEDED)
                for job_id, attempt in zip((first, second), attempts, strict=True)
            ]
            a = db.transaction()
            await a.start()
            await manager.finish_many(db, [requests[0]], "worker-a")
            b = other.transaction()
            await b.start()
            second_finish = asyncio.create_task(manager.finish_many(other, [requests[1]], "w-b"))

            async def blocked(finishing: asyncio.Task[Any] = second_finish) -> bool:
                waiting = await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE pid = $1 AND wait_event_type = 'Lock'",
                    other.get_server_pid(),
                )
                return bool(waiting) or finishing.done()

            await wait_until(blocked, timeout=10, what="the second finish to wait on the child")
            await a.commit()
            await second_finish
            await b.commit()

            assert (await row(db, child))["status"] == "queued"
            assert await dispatches(db, child) == 1
            assert [e["event"] for e in await events(db, child)] == ["waiting", "queued"]
    finally:
        await other.close()


async def test_dependency_failed_parent_cancels_the_chain_below_naming_each_parent(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    root = await trigger(service)
    middle = await trigger(service, depends_on=[root])
    leaf = await trigger(service, depends_on=[middle])
    cleanup = await trigger(service, depends_on=[middle], run_after="any")

    await finish(db, settings, root, JobStatus.FAILED)

    canceled_middle, canceled_leaf = await row(db, middle), await row(db, leaf)
    assert (canceled_middle["status"], canceled_middle["canceled_by"]) == ("canceled", root)
    assert (canceled_leaf["status"], canceled_leaf["canceled_by"]) == ("canceled", middle)
    assert str(root) in canceled_middle["error"]
    assert "failed" in canceled_middle["error"]
    assert canceled_middle["finished_at"] is not None
    [*_, last] = await events(db, leaf)
    assert last["event"] == "canceled"
    assert last["details"] == {"parent": str(middle), "parent_status": "canceled"}
    # run_after any: its one parent ended (canceled), so it runs.
    assert (await row(db, cleanup))["status"] == "queued"
    assert await dispatches(db, cleanup) == 1


async def test_dependency_run_after_any_waits_for_every_parent_to_end_whatever_the_outcome(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    good, bad = await trigger(service), await trigger(service)
    child = await trigger(service, depends_on=[good, bad], run_after="any")

    await finish(db, settings, bad, JobStatus.FAILED)
    assert (await row(db, child))["status"] == "waiting"
    await finish(db, settings, good, JobStatus.SUCCEEDED)
    assert (await row(db, child))["status"] == "queued"


async def test_dependency_retrying_the_failed_parent_makes_its_canceled_dependents_wait_again(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    parent = await trigger(service, max_attempts=1)
    child = await trigger(service, depends_on=[parent])
    grandchild = await trigger(service, depends_on=[child])
    await finish(db, settings, parent, JobStatus.FAILED)
    assert (await row(db, grandchild))["status"] == "canceled"

    retried = await service.retry(parent)

    assert retried.status == "queued"
    for job_id in (child, grandchild):
        waiting = await row(db, job_id)
        assert (waiting["status"], waiting["canceled_by"], waiting["finished_at"]) == (
            "waiting",
            None,
            None,
        )
    assert (await events(db, child))[-1]["details"] == {"retried": str(parent)}
    await finish(db, settings, parent, JobStatus.SUCCEEDED)
    assert (await row(db, child))["status"] == "queued"
    assert (await row(db, grandchild))["status"] == "waiting"


async def test_dependency_retrying_a_dependent_whose_parent_failed_is_refused_naming_it(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    parent = await trigger(service, max_attempts=1)
    child = await trigger(service, depends_on=[parent])
    await finish(db, settings, parent, JobStatus.FAILED)

    with pytest.raises(DependencyNotMetError) as refused:
        await service.retry(child)

    assert str(parent) in refused.value.message
    assert refused.value.status == "canceled"


async def test_dependency_retrying_a_dependent_canceled_by_hand_waits_for_its_parent(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    parent = await trigger(service)
    child = await trigger(service, depends_on=[parent])
    assert (await service.cancel(child)).status == "canceled"

    assert (await service.retry(child)).status == "waiting"
    assert await dispatches(db, child) == 0
    await finish(db, settings, parent, JobStatus.SUCCEEDED)
    assert (await row(db, child))["status"] == "queued"


async def test_dependency_canceling_a_waiting_job_cancels_its_dependents(
    service: JobService, db: asyncpg.Connection
) -> None:
    parent = await trigger(service)
    child = await trigger(service, depends_on=[parent])
    grandchild = await trigger(service, depends_on=[child])

    canceled = await service.cancel(child)

    assert canceled.status == "canceled"
    assert (await row(db, grandchild))["canceled_by"] == child
    assert (await row(db, parent))["status"] == "queued"


async def test_dependency_parent_lost_by_the_reaper_cancels_its_dependents(
    service: JobService,
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    parent = await trigger(service, max_attempts=1)
    child = await trigger(service, depends_on=[parent])
    await start_attempt(db, JobManager(settings.pg_schema_queue), parent, "worker-gone")
    await db.execute(
        "UPDATE dl_jobs SET lease_expires_at = now() - interval '1 second' WHERE job_id = $1",
        parent,
    )

    result = await JobManager(settings.pg_schema_queue, sessions).rescue(10, reaped_by="leader")

    assert result.lost == 1
    assert (await row(db, child))["canceled_by"] == parent


async def test_dependency_on_jobs_that_already_ended_settles_at_creation(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    done, failed = await trigger(service), await trigger(service, max_attempts=1)
    await finish(db, settings, done, JobStatus.SUCCEEDED)
    await finish(db, settings, failed, JobStatus.FAILED)

    [runs, doomed] = await service.trigger_many(
        [spec(depends_on=[done]), spec(depends_on=[done, failed])]
    )

    assert (runs.status, doomed.status) == ("queued", "canceled")
    assert await dispatches(db, runs.job_id) == 1
    assert (await row(db, doomed.job_id))["canceled_by"] == failed


async def test_dependency_on_an_unknown_job_is_refused_naming_it(
    service: JobService, db: asyncpg.Connection
) -> None:
    known, unknown = await trigger(service), uuid.uuid4()

    with pytest.raises(InvalidJobError) as refused:
        await service.trigger_many([spec(), spec(depends_on=[known, unknown])])

    assert refused.value.message == (
        f"jobs[1]: no job has the id {unknown} (field `jobs[1].depends_on[1]`)"
    )
    assert await db.fetchval("SELECT count(*) FROM dl_jobs") == 1


async def test_dependency_trigger_is_skipped_by_its_when_clause_for_a_job_without_dependents(
    service: JobService, db: asyncpg.Connection
) -> None:
    """The trigger's function is never called for an ordinary job: EXPLAIN ANALYZE lists a
    row trigger with the calls it made, and lists none when its WHEN clause held every row
    back."""
    plain, parent = await trigger(service), await trigger(service)
    await trigger(service, depends_on=[parent])

    async def trigger_lines(job_id: uuid.UUID) -> list[str]:
        async with db.transaction():
            plan = await db.fetch(
                "EXPLAIN (ANALYZE, FORMAT TEXT) UPDATE dl_jobs SET status = 'succeeded'"
                " WHERE job_id = $1",
                job_id,
            )
            lines = [r[0] for r in plan if "Trigger dl_jobs_dependents" in r[0]]
            raise _Rollback(lines)

    for job_id, expected in ((plain, 0), (parent, 1)):
        try:
            await trigger_lines(job_id)
        except _Rollback as rolled_back:
            lines = rolled_back.lines
        assert len(lines) == expected, lines
        if expected:
            assert "calls=1" in lines[0]


class _Rollback(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines


async def test_dependency_finishes_of_many_parents_in_one_statement_release_each_child_once(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    """A worker's finish batch ends many parents in one statement; each row's trigger sees
    the whole statement's changes, and a child of two of them is released once."""
    manager = JobManager(settings.pg_schema_queue)
    parents = [await trigger(service) for _ in range(4)]
    [both, first_only] = await service.trigger_many(
        [spec(depends_on=parents[:2]), spec(depends_on=parents[:1])]
    )
    attempts = [await start_attempt(db, manager, p, "worker-a") for p in parents]

    await manager.finish_many(
        db,
        [
            FinishRequest(p, a, JobStatus.SUCCEEDED, JobEvent.SUCCEEDED)
            for p, a in zip(parents, attempts, strict=True)
        ],
        "worker-a",
    )

    for child in (both.job_id, first_only.job_id):
        assert (await row(db, child))["status"] == "queued"
        assert await dispatches(db, child) == 1


async def test_dependency_cancel_of_a_parent_that_is_queued_cancels_its_dependents(
    service: JobService, db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    parent = await trigger(service)
    child = await trigger(service, depends_on=[parent])

    await service.cancel(parent)

    assert (await row(db, child))["status"] == "canceled"
    async with sessions() as session:
        found = await job_rows.get_job(session, child)
    assert found is not None
    assert found.canceled_by == parent


async def _while_a_finish_is_open(
    db: asyncpg.Connection,
    settings: Settings,
    parent: uuid.UUID,
    action: Any,
) -> Any:
    """Run `action()` while the parent's successful finish is written but not committed;
    commit it once `action` waits for a lock (or is done), and return what `action` gave."""
    manager = JobManager(settings.pg_schema_queue)
    attempt = await start_attempt(db, manager, parent, "worker-a")
    finishing = db.transaction()
    await finishing.start()
    await manager.finish_many(
        db, [FinishRequest(parent, attempt, JobStatus.SUCCEEDED, JobEvent.SUCCEEDED)], "w-a"
    )
    task = asyncio.create_task(action())

    async def blocked_or_done() -> bool:
        waiting = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        return bool(waiting) or task.done()

    await wait_until(blocked_or_done, timeout=10, what="the action to wait or end")
    await finishing.commit()
    return await task


async def test_dependency_created_while_its_parent_finishes_is_not_left_waiting(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    """The creator locks the parent: it waits for the finish's commit and sees it ended.

    Without that lock it would read the parent as running and write the child waiting,
    while the finish's trigger, which cannot see the uncommitted child, released nothing.
    """
    parent = await trigger(service)

    created = await _while_a_finish_is_open(
        db, settings, parent, lambda: service.trigger_many([spec(depends_on=[parent])])
    )

    child = created[0].job_id
    assert (await row(db, child))["status"] == "queued"
    assert await dispatches(db, child) == 1


async def test_dependency_retried_while_its_parent_finishes_is_not_left_waiting(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    """A retry of a dependent locks its parents as a creation does."""
    parent = await trigger(service)
    child = await trigger(service, depends_on=[parent])
    await service.cancel(child)

    await _while_a_finish_is_open(db, settings, parent, lambda: service.retry(child))

    assert (await row(db, child))["status"] == "queued"
    assert await dispatches(db, child) == 1


async def test_dependency_released_into_a_fair_queue_takes_its_round_then(
    service: JobService, db: asyncpg.Connection, settings: Settings
) -> None:
    """A waiting job has no round; released, it takes one after its tenant's queued jobs, as
    a trigger at that moment would, and its dispatch carries it."""
    await db.execute(
        "INSERT INTO dl_queues (queue, fair_by_partition) VALUES ('etl.default', true)"
    )
    parent = await trigger(service, partition_key="tenant-a")
    child = await trigger(service, depends_on=[parent], partition_key="tenant-a")
    queued = [await trigger(service, partition_key="tenant-a") for _ in range(2)]
    assert (await row(db, child))["fair_round"] is None

    await finish(db, settings, parent, JobStatus.SUCCEEDED)

    released = await row(db, child)
    rounds = [(await row(db, job_id))["fair_round"] for job_id in queued]
    assert released["fair_round"] == max(rounds) + 1
    priority = await db.fetchval(
        "SELECT priority FROM pgqueuer WHERE id = $1", released["pgq_job_id"]
    )
    others = await db.fetch(
        "SELECT priority FROM pgqueuer WHERE payload = ANY($1::bytea[])",
        [job_id.bytes for job_id in queued],
    )
    assert priority < min(r["priority"] for r in others)  # it runs after them
