"""QueueService's counts: live jobs, the last hour's finishes and throughput per minute."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.errors import InvalidQueueError
from app.domain.queues import Queue
from app.jobs.queue_service import QueueService
from app.settings import Settings


@pytest.fixture
def queues(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> QueueService:
    return QueueService(sessions, settings)


async def add_job(
    db: asyncpg.Connection,
    queue: str,
    status: str,
    *,
    available_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> None:
    """A dl_jobs row as the lifecycle would leave it (no dispatch: counts only)."""
    await db.execute(
        "INSERT INTO dl_jobs (job_id, queue, task, lock_key, status, available_at, finished_at)"
        " VALUES ($1, $2, 'noop', 'k', $3, coalesce($4, now()), $5)",
        uuid.uuid4(),
        queue,
        status,
        available_at,
        finished_at,
    )


def by_name(views: list[Queue]) -> dict[str, Queue]:
    return {view.queue: view for view in views}


async def test_queue_list_counts_live_and_finished_jobs_per_queue(
    db: asyncpg.Connection, queues: QueueService
) -> None:
    now: datetime = await db.fetchval("SELECT now()")
    for _ in range(3):
        await add_job(db, "a", "queued", available_at=now - timedelta(seconds=30))
    await add_job(db, "a", "queued", available_at=now - timedelta(seconds=90))
    await add_job(db, "a", "queued", available_at=now + timedelta(hours=1))  # not due yet
    await add_job(db, "a", "running")
    await add_job(db, "a", "running")
    await add_job(db, "a", "succeeded", finished_at=now - timedelta(minutes=1))
    await add_job(db, "a", "succeeded", finished_at=now - timedelta(minutes=1))
    await add_job(db, "a", "failed", finished_at=now - timedelta(minutes=5))
    await add_job(db, "a", "lost", finished_at=now - timedelta(minutes=59, seconds=30))
    await add_job(db, "a", "succeeded", finished_at=now - timedelta(hours=2))  # too old
    await add_job(db, "b", "canceled", finished_at=now - timedelta(seconds=1))
    await add_job(db, "old", "succeeded", finished_at=now - timedelta(days=3))
    await db.execute("INSERT INTO dl_queues (queue, paused, paused_at) VALUES ('c', true, now())")

    views = by_name((await queues.list_queues()).queues)

    assert list(views) == ["a", "b", "c"], "sorted; a queue with only old jobs is left out"
    a = views["a"]
    assert (a.queued, a.running, a.paused) == (5, 2, False)
    assert a.oldest_queued_age_sec is not None
    assert 90 <= a.oldest_queued_age_sec < 120
    assert (a.finished_last_hour.succeeded, a.finished_last_hour.failed) == (2, 1)
    assert (a.finished_last_hour.canceled, a.finished_last_hour.lost) == (0, 1)
    assert len(a.throughput) == 60
    minutes = [point.minute for point in a.throughput]
    assert minutes == sorted(minutes)
    assert all(
        later - earlier == timedelta(minutes=1) for earlier, later in itertools.pairwise(minutes)
    )
    this_minute = now.replace(second=0, microsecond=0)
    assert minutes[-1] in (this_minute, this_minute + timedelta(minutes=1)), "current minute last"
    assert sum(p.succeeded for p in a.throughput) == 2
    assert sum(p.failed for p in a.throughput) == 1
    # 59.5 minutes ago counts for the hour, but falls before the first whole minute shown.
    assert sum(p.lost for p in a.throughput) in (0, 1)
    minute_of = {p.minute: p for p in a.throughput}
    assert minute_of[(now - timedelta(minutes=5)).replace(second=0, microsecond=0)].failed == 1
    b = views["b"]
    assert (b.queued, b.running, b.oldest_queued_age_sec) == (0, 0, None)
    assert b.finished_last_hour.canceled == 1
    c = views["c"]
    assert c.paused is True
    assert c.paused_at is not None
    assert c.finished_last_hour.succeeded == 0
    assert all(p.succeeded == p.failed == p.canceled == p.lost == 0 for p in c.throughput)


async def test_queue_list_is_empty_without_jobs_or_pauses(queues: QueueService) -> None:
    assert (await queues.list_queues()).queues == []


async def test_queue_get_of_an_unknown_queue_is_all_zeros(queues: QueueService) -> None:
    view = await queues.get("nothing.here")
    assert view.queue == "nothing.here"
    assert (view.queued, view.running, view.paused) == (0, 0, False)
    assert len(view.throughput) == 60


async def test_queue_get_counts_only_that_queue(
    db: asyncpg.Connection, queues: QueueService
) -> None:
    await add_job(db, "mine", "queued")
    await add_job(db, "theirs", "queued")
    await add_job(db, "theirs", "succeeded", finished_at=await db.fetchval("SELECT now()"))
    view = await queues.get("mine")
    assert view.queued == 1
    assert view.finished_last_hour.succeeded == 0


@pytest.mark.parametrize("name", ["", "has space", "x" * 101, "semi;colon", "nul\x00"])
async def test_queue_pause_rejects_a_name_no_job_could_have(
    queues: QueueService, name: str
) -> None:
    with pytest.raises(InvalidQueueError, match="`queue`"):
        await queues.pause(name)
