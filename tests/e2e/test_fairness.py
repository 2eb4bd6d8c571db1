"""Fairness between tenants on a busy fleet: the issue's figure with real workers.

Tenant A has 100,000 jobs queued in a fair queue and two workers are busy with them when
tenant B triggers 100. Round-robin means each of B's jobs waits behind at most one job of
A, so B's jobs start within the next ~200 starts, not after A's backlog. Judged by the
database's own record (the `started` events), not by how long it took.
"""

from __future__ import annotations

import pytest

from app.db.engine import create_session_factory
from app.domain.fairness import QueueFairness
from app.domain.spec import JobCreate
from app.jobs.queue_service import QueueService
from tests.support.jobs_db import JobsDb, enqueue_all
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

QUEUE = "etl.shared"
WORKERS = 2
CONCURRENCY = 8
A_JOBS = 100_000
B_JOBS = 100
CHUNK = 10_000
# Starts already under way (or just picked) when B triggers are not B's to wait for: at
# most every slot of the fleet, twice (one running, one picked by the next dequeue).
IN_FLIGHT = WORKERS * CONCURRENCY * 2


def specs(tenant: str, count: int, first: int = 0) -> list[JobCreate]:
    return [
        JobCreate(
            queue=QUEUE,
            task="noop",
            args={"steps": 0},
            lock_key=f"{tenant}-{n}",
            partition_key=tenant,
        )
        for n in range(first, first + count)
    ]


async def started(jobs_db: JobsDb, tenant: str) -> int:
    return int(
        await jobs_db.scalar(
            "SELECT count(*) FROM dl_jobs WHERE queue = :queue AND partition_key = :tenant"
            " AND started_at IS NOT NULL",
            queue=QUEUE,
            tenant=tenant,
        )
    )


@pytest.mark.timeout(600)
async def test_a_small_tenant_starts_within_its_round_behind_a_huge_backlog(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    service = QueueService(create_session_factory(jobs_db.engine), jobs_db.settings)
    await service.set_fairness(QUEUE, QueueFairness(by="partition_key"))
    for first in range(0, A_JOBS, CHUNK):
        await enqueue_all(jobs_db, specs("A", CHUNK, first))
    for _ in range(WORKERS):
        fleet.start(queues={QUEUE: CONCURRENCY})

    async def fleet_is_busy_with_a() -> int | None:
        count = await started(jobs_db, "A")
        return count if count >= 1_000 else None

    await wait_until(fleet_is_busy_with_a, timeout=120, what="1,000 of A's jobs started")
    b_ids = await enqueue_all(jobs_db, specs("B", B_JOBS))

    async def b_all_started() -> int | None:
        count = await started(jobs_db, "B")
        return count if count == B_JOBS else None

    await wait_until(
        b_all_started, timeout=120, what="B's jobs started", diagnostics=fleet.diagnostics
    )
    fleet.stop_all()

    row = await jobs_db.fetch(
        """SELECT min(created_at) AS triggered, max(started_at) AS last_b,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY e.at - j.created_at) AS p50,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY e.at - j.created_at) AS p99
           FROM dl_jobs j JOIN dl_job_events e ON e.job_id = j.job_id AND e.event = 'started'
           WHERE j.job_id = ANY(:ids)""",
        ids=b_ids,
    )
    triggered, last_b = row[0]["triggered"], row[0]["last_b"]
    a_meanwhile = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events e JOIN dl_jobs j USING (job_id)"
        " WHERE j.queue = :queue AND j.partition_key = 'A' AND e.event = 'started'"
        " AND e.at > :triggered AND e.at <= :last_b",
        queue=QUEUE,
        triggered=triggered,
        last_b=last_b,
    )
    a_left = await jobs_db.scalar(
        "SELECT count(*) FROM dl_jobs WHERE queue = :queue AND status = 'queued'", queue=QUEUE
    )
    print(
        f"\nfairness: B's {B_JOBS} jobs behind {A_JOBS:,} of A: wait p50 "
        f"{row[0]['p50'].total_seconds():.2f} s, p99 {row[0]['p99'].total_seconds():.2f} s; "
        f"A started {a_meanwhile} meanwhile, {a_left:,} still queued"
    )
    # Round-robin: one job of A per job of B, plus what was in flight when B came.
    assert a_meanwhile <= B_JOBS + IN_FLIGHT
    assert a_left > A_JOBS // 2, "B did not wait for A's backlog to drain"
