"""Schedules fired by real workers: on time, each instance once, across a leader's death."""

from __future__ import annotations

import itertools
import re
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_session_factory
from app.domain.schedules import ScheduleCreate, ScheduleUpdate
from app.jobs.schedule_service import ScheduleService
from app.settings import Settings
from tests.support.jobs_db import JobsDb
from tests.support.logs import log_records
from tests.support.schedules import jobs_of
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet, WorkerProcess

NAME = "every-second"
FIRED_LINE = re.compile(rf"schedule {NAME} fired for (\S+): job (\S+)(.*)")  # a log event
LEADER_LINE = "became maintenance leader"


def fire_time(idempotency_key: str) -> datetime:
    """The fire time a scheduled job's idempotency key names."""
    return datetime.fromisoformat(idempotency_key.split(":", 2)[2])


def leader(fleet: WorkerFleet) -> WorkerProcess | None:
    """The live worker that most recently became leader (one at a time holds the lock)."""
    leaders = [w for w in fleet.alive() if LEADER_LINE in w.log()]
    return leaders[0] if len(leaders) == 1 else None


async def test_schedule_fires_every_instance_once_across_three_workers_and_a_leader_death(
    engine: AsyncEngine, settings: Settings, jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    for worker_id in ("s1", "s2", "s3"):
        await fleet.start_ready(worker_id)
    service = ScheduleService(create_session_factory(engine), settings)
    await service.create(
        ScheduleCreate(
            name=NAME,
            cron="* * * * * *",
            queue="etl.default",
            task="noop",
            lock_key="ticks",
            lease_ttl_sec=3,  # a job cut off by the kill below comes back within seconds
        )
    )

    async def fired(count: int) -> bool:
        return len(await jobs_of(engine, NAME)) >= count

    await wait_until(lambda: fired(4), timeout=20, what="4 fires", diagnostics=fleet.diagnostics)
    first_leader = await wait_until(
        lambda: leader(fleet), timeout=10, what="one leader", diagnostics=fleet.diagnostics
    )
    before_kill = len(await jobs_of(engine, NAME))
    first_leader.kill()
    await first_leader.wait_exit(timeout=10)
    await wait_until(
        lambda: fired(before_kill + 4),
        timeout=20,
        what="4 fires after the leader died",
        diagnostics=fleet.diagnostics,
    )
    await service.update(NAME, ScheduleUpdate(enabled=False))
    jobs = await jobs_of(engine, NAME)
    for job in jobs:
        await jobs_db.wait_status(
            job["job_id"], "succeeded", timeout=30, diagnostics=fleet.diagnostics
        )

    fires = [fire_time(job["idempotency_key"]) for job in jobs]
    assert len(set(fires)) == len(fires), "an instance fired twice"
    assert sorted(fires) == fires
    assert all(fire.microsecond == 0 for fire in fires)
    # Each fire time is one second after the one before, except across the leader's death,
    # where the missed window fires once.
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(fires)]
    assert sum(1 for gap in gaps if gap != 1) <= 1, gaps
    # Fired on time: each job was created soon after its fire time (the bound is loose on
    # purpose; the closing note of the issue measures the lateness).
    lateness = [
        (job["created_at"] - fire).total_seconds() for job, fire in zip(jobs, fires, strict=True)
    ]
    assert all(0 <= late < 5 for late in lateness), lateness

    # No worker ever tried to fire an instance another had fired ("already existed").
    fired_lines = [
        (worker.worker_id, match)
        for worker in fleet.workers
        for record in log_records(worker.log())
        if (match := FIRED_LINE.fullmatch(record["event"]))
    ]
    assert len(fired_lines) == len(jobs)
    assert all(match.group(3).strip() == "(worker " + wid + ")" for wid, match in fired_lines)
    firing_workers = {worker_id for worker_id, _ in fired_lines}
    assert first_leader.worker_id in firing_workers
    assert len(firing_workers) >= 2, "another worker took over firing"
