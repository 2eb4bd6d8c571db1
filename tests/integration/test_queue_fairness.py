"""Fair queues in the database: the order pgqueuer will start jobs in, and the rebase.

pgqueuer dequeues a queue's dispatches by priority (higher first), then id; `dispatch_order`
reads them in that order, so these tests see the order workers will start jobs in
(tests/e2e/test_fairness.py runs real workers).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import fairness, queues
from app.db import jobs as job_rows
from app.domain.fairness import QueueFairness, Rebase
from app.jobs.enqueue import enqueue_many_in_session
from app.jobs.fair_rounds import FairRounds
from app.settings import Settings
from tests.support.specs import echo_spec

QUEUE = "etl.test"
SQL_ENQUEUE = (
    "SELECT job_id FROM dl_enqueue(queue => 'etl.test', task => 'test.echo',"
    " lock_key => 'k', partition_key => $1)"
)


async def make_fair(sessions: async_sessionmaker[AsyncSession], fair: bool = True) -> None:
    async with sessions() as session, session.begin():
        by = "partition_key" if fair else None
        await queues.set_fairness_in_session(session, QUEUE, QueueFairness(by=by))


async def trigger(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    tenant: str | None,
    count: int,
    **overrides: object,
) -> None:
    """`count` jobs of `tenant` in one trigger call (one statement)."""
    specs = [
        echo_spec(partition_key=tenant, lock_key=f"{tenant}-{n}", **overrides) for n in range(count)
    ]
    async with sessions() as session, session.begin():
        await enqueue_many_in_session(session, specs, settings)


async def dispatch_order(db: asyncpg.Connection) -> list[str | None]:
    """The tenants of the queue's queued dispatches, in the order pgqueuer dequeues them."""
    rows = await db.fetch(
        """SELECT j.partition_key FROM pgqueuer d JOIN dl_jobs j ON j.pgq_job_id = d.id
           WHERE d.entrypoint = $1 AND d.status = 'queued'
           ORDER BY d.priority DESC, d.id""",
        QUEUE,
    )
    return [row["partition_key"] for row in rows]


async def test_a_fair_queue_starts_tenants_round_robin_whatever_their_backlog(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    await make_fair(sessions)
    await trigger(sessions, settings, "A", 50)
    await trigger(sessions, settings, "B", 5)
    for _ in range(5):  # one by one, through the SQL function
        await db.fetchval(SQL_ENQUEUE, None)

    order = await dispatch_order(db)

    # Five rounds of one job of each tenant (jobs without a partition_key are one tenant),
    # in the order each tenant came; then the rest of A.
    assert order[:15] == ["A", "B", None] * 5
    assert order[15:] == ["A"] * 45


async def test_a_queue_that_is_not_fair_starts_jobs_oldest_first(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    await trigger(sessions, settings, "A", 20)
    await trigger(sessions, settings, "B", 3)

    assert await dispatch_order(db) == ["A"] * 20 + ["B"] * 3
    assert await db.fetchval("SELECT count(*) FROM dl_jobs WHERE fair_round IS NOT NULL") == 0


async def test_priority_comes_before_fairness(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    await make_fair(sessions)
    await trigger(sessions, settings, "A", 10)
    await trigger(sessions, settings, "B", 2, priority=50)
    await trigger(sessions, settings, "C", 2, priority=500)

    assert await dispatch_order(db) == ["B", "B", *["A"] * 10, "C", "C"]


async def test_a_tenant_arriving_late_joins_at_the_front_not_behind_the_backlog(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    await make_fair(sessions)
    await trigger(sessions, settings, "A", 30)
    # A's first 20 jobs leave the queue (as if they had started): its front is round 20.
    await leave_queue(db, "A", 20)
    await trigger(sessions, settings, "B", 3)

    assert await dispatch_order(db) == ["A", "B"] * 3 + ["A"] * 7


async def test_turning_fairness_off_orders_new_jobs_oldest_first_again(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    await make_fair(sessions)
    await make_fair(sessions, fair=False)
    await trigger(sessions, settings, "A", 5)
    await trigger(sessions, settings, "B", 2)

    assert await dispatch_order(db) == ["A"] * 5 + ["B"] * 2


async def test_a_retried_job_keeps_its_round(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    """A redispatch (retry, postpone, reaper) reads the job's round: its turn is kept."""
    await make_fair(sessions)
    await trigger(sessions, settings, "A", 3)
    await trigger(sessions, settings, "B", 3)
    job_id, pgq_job_id = await db.fetchrow(
        "SELECT job_id, pgq_job_id FROM dl_jobs WHERE partition_key = 'B'"
        " ORDER BY fair_round LIMIT 1"
    )
    await db.execute("DELETE FROM pgqueuer WHERE id = $1", pgq_job_id)
    async with sessions() as session, session.begin():
        await job_rows.dispatch(
            session,
            settings.pg_schema_queue,
            queue=QUEUE,
            job_id=job_id,
            priority=100,
            delay=timedelta(0),
        )

    assert await dispatch_order(db) == ["A", "B"] * 3


async def leave_queue(db: asyncpg.Connection, tenant: str, count: int) -> None:
    """The tenant's first `count` jobs end, their dispatches gone, as when they ran."""
    await db.execute(
        """WITH done AS (
               UPDATE dl_jobs SET status = 'succeeded', finished_at = now()
               WHERE job_id IN (SELECT job_id FROM dl_jobs WHERE partition_key = $1
                                AND status = 'queued' ORDER BY fair_round LIMIT $2)
               RETURNING pgq_job_id)
           DELETE FROM pgqueuer WHERE id IN (SELECT pgq_job_id FROM done)""",
        tenant,
        count,
    )


async def test_the_base_follows_the_front_and_keeps_the_order(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    """A queue that ran REBASE_AFTER rounds: its base moves, its dispatches are rewritten,
    and both the queued jobs and those triggered later keep their turns."""
    backlog = fairness.REBASE_AFTER + 100
    await make_fair(sessions)
    await trigger(sessions, settings, "A", backlog)
    await leave_queue(db, "A", fairness.REBASE_AFTER)
    await trigger(sessions, settings, "B", 3)
    before = await dispatch_order(db)
    rounds = FairRounds(sessions, settings.pg_schema_queue)

    done = await rounds.rebase_due()

    assert [(r.queue, r.base, r.rewritten) for r in done] == [(QUEUE, fairness.REBASE_AFTER, 103)]
    assert await dispatch_order(db) == before == ["A", "B"] * 3 + ["A"] * 97
    await trigger(sessions, settings, "C", 2)
    assert (await dispatch_order(db))[:6] == ["A", "B", "C", "A", "B", "C"]
    assert await rounds.rebase_due() == []  # nothing more to do until the front moves on


async def test_a_rebase_waits_for_a_dispatch_in_flight_and_rewrites_it(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    db: asyncpg.Connection,
    database_dsn: str,
) -> None:
    """The dispatch reads its base FOR SHARE: the rebase cannot miss an uncommitted one."""
    await make_fair(sessions)
    await trigger(sessions, settings, "A", 10)
    await leave_queue(db, "A", 5)
    caller = await asyncpg.connect(database_dsn)
    try:
        transaction = caller.transaction()
        await transaction.start()
        job_id: uuid.UUID = await caller.fetchval(SQL_ENQUEUE, "B")
        rebase = asyncio.create_task(rebase_to(sessions, settings, 5))
        await asyncio.sleep(0.5)
        assert not rebase.done(), "the rebase must wait for the dispatch in flight"
        await transaction.commit()
        assert (await rebase).rewritten == 6
    finally:
        await caller.close()

    # Written against base 0, rewritten against base 5: B's round 5 is first again.
    assert await pgq_priority(db, job_id) == -(100 * fairness.ROUND_SPAN + 0)
    assert await dispatch_order(db) == ["A", "B"] + ["A"] * 4


async def test_a_dispatch_that_waited_for_a_rebase_reads_the_new_base(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, db: asyncpg.Connection
) -> None:
    await make_fair(sessions)
    await trigger(sessions, settings, "A", 10)
    await leave_queue(db, "A", 5)
    async with sessions() as session, session.begin():
        await fairness.rebase_in_session(session, settings.pg_schema_queue, QUEUE, 5)
        enqueue = asyncio.create_task(db.fetchval(SQL_ENQUEUE, "B"))
        await asyncio.sleep(0.5)
        assert not enqueue.done(), "the dispatch must wait for the rebase"
    job_id = await enqueue

    assert await pgq_priority(db, job_id) == -(100 * fairness.ROUND_SPAN + 0)
    assert await dispatch_order(db) == ["A", "B"] + ["A"] * 4


async def rebase_to(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, base: int
) -> Rebase:
    async with sessions() as session, session.begin():
        return await fairness.rebase_in_session(session, settings.pg_schema_queue, QUEUE, base)


async def pgq_priority(db: asyncpg.Connection, job_id: uuid.UUID) -> int:
    return int(
        await db.fetchval(
            "SELECT d.priority FROM pgqueuer d JOIN dl_jobs j ON j.pgq_job_id = d.id"
            " WHERE j.job_id = $1",
            job_id,
        )
    )
