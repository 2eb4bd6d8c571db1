"""dl_rate_admit(): the shared buckets that decide which rate-limited starts may begin.

Called here as the worker's start statement calls it, with the jobs that got their lock and
slot, in batch order. Every admitted start is stamped with the time its bucket counted it;
a refused one is told when to come back (app.db.rate_limit_function).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime, timedelta

import asyncpg

from app.jobs.service import JobService

ADMIT = "SELECT * FROM dl_rate_admit($1::uuid[], $2::text[], $3::text[], $4::boolean[])"
SECOND = timedelta(seconds=1)


async def _limit(
    db: asyncpg.Connection,
    queue: str,
    start: tuple[int, float] | None = None,
    per_key: tuple[int, float] | None = None,
) -> None:
    await db.execute(
        "INSERT INTO dl_queues (queue, start_limit, start_period_sec, rate_key_limit,"
        " rate_key_period_sec) VALUES ($1, $2, $3, $4, $5)",
        queue,
        *(start or (None, None)),
        *(per_key or (None, None)),
    )


async def _admit(
    db: asyncpg.Connection,
    queue: str,
    rate_keys: list[str | None],
    *,
    waiting: bool = False,
) -> list[asyncpg.Record]:
    ids = [uuid.uuid4() for _ in rate_keys]
    rows = await db.fetch(ADMIT, ids, [queue] * len(ids), rate_keys, [waiting] * len(ids))
    assert [row["job_id"] for row in rows] == ids, "one answer per job, in batch order"
    return rows


async def test_a_queue_admits_its_count_then_tells_the_rest_when_a_slot_frees(
    db: asyncpg.Connection,
) -> None:
    await _limit(db, "rate.q", start=(3, 1.0))

    rows = await _admit(db, "rate.q", [None] * 5)

    assert [row["admitted"] for row in rows] == [True, True, True, False, False]
    counted_at = rows[0]["decided_at"]
    # One clock reading per call: the admitted are counted at it, the refused decided at it.
    assert {row["decided_at"] for row in rows} == {counted_at}
    # The window's first start ages out one period later: the refused come back then.
    assert [(row["retry_at"], row["limited_by"]) for row in rows[3:]] == [
        (counted_at + SECOND, "queue")
    ] * 2


async def test_newcomers_queue_up_a_periods_worth_per_period(db: asyncpg.Connection) -> None:
    await _limit(db, "rate.line", start=(3, 1.0))
    first = await _admit(db, "rate.line", [None] * 3)
    counted_at = first[0]["decided_at"]

    refused = await _admit(db, "rate.line", [None] * 7)

    assert not any(row["admitted"] for row in refused)
    # Three per period, in arrival order: a backlog comes back a period's worth at a time.
    turns = [SECOND] * 3 + [2 * SECOND] * 3 + [3 * SECOND]
    assert [row["retry_at"] - counted_at for row in refused] == turns


async def test_a_job_that_already_waited_is_told_the_moment_the_next_slot_frees(
    db: asyncpg.Connection,
) -> None:
    await _limit(db, "rate.again", start=(2, 1.0))
    counted_at = (await _admit(db, "rate.again", [None] * 2))[0]["decided_at"]
    await _admit(db, "rate.again", [None] * 6)  # a line of newcomers up to 3 periods out

    again = await _admit(db, "rate.again", [None] * 3, waiting=True)

    # Back a little early for its turn (or robbed of it): not sent behind the whole line.
    assert [row["retry_at"] for row in again] == [counted_at + SECOND] * 3


async def test_each_rate_key_has_its_own_count(db: asyncpg.Connection) -> None:
    await _limit(db, "rate.keys", per_key=(2, 10.0))

    rows = await _admit(db, "rate.keys", ["a", "a", "a", "b", "b", "b", None, None])

    assert [row["admitted"] for row in rows] == [True, True, False, True, True, False, True, True]
    assert {rows[2]["limited_by"], rows[5]["limited_by"]} == {"rate_key"}


async def test_a_job_refused_by_its_key_does_not_use_up_the_queues_count(
    db: asyncpg.Connection,
) -> None:
    await _limit(db, "rate.both", start=(3, 1.0), per_key=(2, 1.0))

    rows = await _admit(db, "rate.both", ["a", "a", "a", "b", "b"])

    assert [row["admitted"] for row in rows] == [True, True, False, True, False]
    assert [rows[2]["limited_by"], rows[4]["limited_by"]] == ["rate_key", "queue"]


async def test_a_queue_without_limits_admits_everything_and_writes_nothing(
    db: asyncpg.Connection,
) -> None:
    rows = await _admit(db, "rate.free", [None, "a", "a"])

    assert [row["admitted"] for row in rows] == [True] * 3
    assert await db.fetchval("SELECT count(*) FROM dl_rate_buckets") == 0


async def test_concurrent_callers_never_admit_more_than_the_window_holds(
    database_dsn: str, db: asyncpg.Connection
) -> None:
    """Four connections hammer one bucket; every window of a period holds at most its count.

    Without the bucket lock two callers read the same window and both admit into it.
    """
    count, period = 5, 0.2
    await _limit(db, "rate.race", start=(count, period), per_key=(2, period))
    callers = [await asyncpg.connect(database_dsn) for _ in range(4)]
    admitted: list[tuple[datetime, str]] = []

    async def hammer(connection: asyncpg.Connection) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5
        while loop.time() < until:
            keys = [random.choice(["a", "b", "c", "d"]) for _ in range(random.randint(1, 4))]
            for row, key in zip(await _admit(connection, "rate.race", keys), keys, strict=True):
                if row["admitted"]:
                    admitted.append((row["decided_at"], key))

    try:
        await asyncio.gather(*(hammer(c) for c in callers))
    finally:
        for connection in callers:
            await connection.close()

    window = timedelta(seconds=period)
    times = sorted(at for at, _ in admitted)
    assert len(times) > 3 * count, "too few starts to test anything"
    for end in times:
        assert sum(1 for at in times if end - window < at <= end) <= count, end
    for key in "abcd":
        keyed = sorted(at for at, k in admitted if k == key)
        for end in keyed:
            assert sum(1 for at in keyed if end - window < at <= end) <= 2, (key, end)


async def test_a_job_shows_what_it_waits_for_only_while_it_is_queued(
    db: asyncpg.Connection, service: JobService
) -> None:
    """A job canceled while it waited keeps the column; its view no longer waits."""
    waiting, canceled = uuid.uuid4(), uuid.uuid4()
    for job_id, status in ((waiting, "queued"), (canceled, "canceled")):
        await db.execute(
            "INSERT INTO dl_jobs (job_id, queue, task, lock_key, status, rate_key, waiting_for)"
            " VALUES ($1, 'rate.view', 'noop', $2, $3, 'partner-a', 'rate_limit')",
            job_id,
            str(job_id),
            status,
        )

    assert (await service.status(waiting)).waiting_for == "rate_limit"
    assert (await service.status(canceled)).waiting_for is None
