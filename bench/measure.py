"""Waiting for a drain to finish and reading its rate from database timestamps.

Both the peer and the project workers are measured the same way: from pgqueuer_log, which
pgqueuer writes for either, N / (last `successful` row - first `picked` row).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bench.processes import Managed, Processes

POLL_SEC = 0.1


class DrainIncomplete(RuntimeError):
    """The workers did not finish the jobs in time, or some job did not succeed."""


def drain_timeout(jobs: int) -> float:
    """A generous limit: no drain in these scenarios runs slower than 20 jobs/s."""
    return max(120.0, jobs / 20)


async def db_now(connection: asyncpg.Connection) -> datetime:
    """The database clock (a start mark for the rows of one repetition)."""
    value: datetime = await connection.fetchval("SELECT clock_timestamp()")
    return value


async def wait_queue_empty(
    connection: asyncpg.Connection, workers: Sequence[Managed], jobs: int
) -> None:
    """Until pgqueuer's queue table holds no row (each completion deletes its row)."""
    deadline = time.monotonic() + drain_timeout(jobs)
    while await connection.fetchval("SELECT EXISTS (SELECT FROM pgqueuer)"):
        Processes.check_alive(*workers)
        if time.monotonic() > deadline:
            left = await connection.fetchval("SELECT count(*) FROM pgqueuer")
            raise DrainIncomplete(f"{left} pgqueuer rows left after {drain_timeout(jobs):.0f}s")
        await asyncio.sleep(POLL_SEC)


async def wait_lifecycle_done(
    connection: asyncpg.Connection, workers: Sequence[Managed], jobs: int, since: datetime
) -> None:
    """Until no dl_jobs row is live, every job created since `since` succeeded, queue empty."""
    deadline = time.monotonic() + drain_timeout(jobs)
    # EXISTS stops at the first live row: polling costs the same whatever the backlog.
    live_sql = "SELECT EXISTS (SELECT FROM dl_jobs WHERE status IN ('queued', 'running'))"
    while await connection.fetchval(live_sql):
        Processes.check_alive(*workers)
        if time.monotonic() > deadline:
            left = await connection.fetchval(
                "SELECT count(*) FROM dl_jobs WHERE status IN ('queued', 'running')"
            )
            raise DrainIncomplete(f"{left} jobs still live after {drain_timeout(jobs):.0f}s")
        await asyncio.sleep(POLL_SEC)
    row = await connection.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE status <> 'succeeded') AS bad"
        " FROM dl_jobs WHERE created_at >= $1",
        since,
    )
    if row["bad"] or row["total"] != jobs:
        raise DrainIncomplete(
            f"expected {jobs} succeeded jobs, found {row['total']} of which {row['bad']} not"
            " succeeded"
        )
    await wait_queue_empty(connection, workers, jobs)


@dataclass(frozen=True)
class Span:
    """First and last timestamp of a drain and how many jobs it covered."""

    first: datetime
    last: datetime
    jobs: int

    @property
    def seconds(self) -> float:
        """The span's length."""
        return (self.last - self.first).total_seconds()

    @property
    def rate(self) -> float:
        """Jobs per second over the span."""
        return self.jobs / self.seconds if self.seconds > 0 else 0.0


async def pgqueuer_span(connection: asyncpg.Connection, jobs: int, since: datetime) -> Span:
    """First `picked` to last `successful` in pgqueuer_log since `since`."""
    row = await connection.fetchrow(
        "SELECT min(created) FILTER (WHERE status = 'picked') AS first,"
        " max(created) FILTER (WHERE status = 'successful') AS last,"
        " count(*) FILTER (WHERE status = 'successful') AS done"
        " FROM pgqueuer_log WHERE created >= $1",
        since,
    )
    if row["done"] != jobs or row["first"] is None:
        raise DrainIncomplete(f"pgqueuer_log shows {row['done']} successful jobs, not {jobs}")
    return Span(row["first"], row["last"], jobs)


async def dl_jobs_span(connection: asyncpg.Connection, jobs: int, since: datetime) -> Span:
    """First started_at to last finished_at of the jobs created since `since`."""
    row = await connection.fetchrow(
        "SELECT min(started_at) AS first, max(finished_at) AS last FROM dl_jobs"
        " WHERE created_at >= $1",
        since,
    )
    return Span(row["first"], row["last"], jobs)
