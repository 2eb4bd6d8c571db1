"""Schedules fired by real workers: on time, each instance once, across a leader's death,
and on time when made over the API while the leader sleeps its longest."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_session_factory
from app.domain.schedules import ScheduleCreate, ScheduleUpdate
from app.jobs.schedule_service import ScheduleService
from app.settings import Settings
from tests.support.api_servers import start_api_server, stop_api_server
from tests.support.jobs_db import JobsDb
from tests.support.logs import log_records
from tests.support.schedules import jobs_of, schedule_row, schedule_spec, set_columns
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet, WorkerProcess

NAME = "every-second"
FIRED_LINE = re.compile(rf"schedule {NAME} fired for (\S+): job (\S+)(.*)")  # a log event
LEADER_LINE = "became maintenance leader"


def fire_time(idempotency_key: str) -> datetime:
    """The fire time a scheduled job's idempotency key names."""
    prefix, schedule, _schedule_id, at = idempotency_key.split(":", 3)  # dl:schedule:<id>:<at>
    assert (prefix, schedule) == ("dl", "schedule"), idempotency_key
    return datetime.fromisoformat(at)


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


# The scheduler's safety net, longer than any test: a schedule made while the leader sleeps
# fires on time only because its change notice woke the leader.
SLEEPY = {"DL_SCHEDULE_PERIOD_SEC": "3600"}
SCHEDULES = "/api/v1/schedules"


@pytest.fixture
async def api(database_dsn: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API process on this test's database (the fleet's)."""
    server = await start_api_server(database_dsn, tmp_path / "api.log")
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            yield client
    finally:
        stop_api_server(server)


async def sleeping_leader(engine: AsyncEngine, settings: Settings, fleet: WorkerFleet) -> None:
    """Start one worker and return once its scheduler has looked and fallen asleep.

    A yearly schedule whose fire time is cleared (by hand: no notice) gets its baseline in
    the leader's first pass; after that nothing is due for months, so it sleeps its period.
    """
    await ScheduleService(create_session_factory(engine), settings).create(
        schedule_spec(name="yearly", cron="0 0 1 1 *", queue="etl.default", task="noop")
    )
    await set_columns(engine, "yearly", "next_run_at = NULL")
    await fleet.start_ready("sleepy", env=SLEEPY)

    async def baselined() -> bool:
        return (await schedule_row(engine, "yearly"))["next_run_at"] is not None

    await wait_until(
        baselined, timeout=20, what="the leader's first pass", diagnostics=fleet.diagnostics
    )


def every_second(name: str, **overrides: object) -> dict[str, object]:
    """A schedule body for POST /schedules."""
    return {
        "name": name,
        "cron": "* * * * * *",
        "queue": "etl.default",
        "task": "noop",
        "lock_key": name,
        **overrides,
    }


async def test_schedule_made_over_the_api_wakes_the_sleeping_leader_and_fires_on_time(
    engine: AsyncEngine, settings: Settings, fleet: WorkerFleet, api: httpx.AsyncClient
) -> None:
    await sleeping_leader(engine, settings, fleet)

    created = await api.post(SCHEDULES, json=every_second("woken"))
    assert created.status_code == 201, created.text
    first_fire = datetime.fromisoformat(created.json()["next_run_at"])

    async def first_job() -> dict[str, object] | None:
        jobs = await jobs_of(engine, "woken")
        return jobs[0] if jobs else None

    job = await wait_until(
        first_job, timeout=20, what="the new schedule's first job", diagnostics=fleet.diagnostics
    )
    # Its first fire time, fired when it came (by the database clock), not a period later.
    assert fire_time(str(job["idempotency_key"])) == first_fire
    created_at = job["created_at"]
    assert isinstance(created_at, datetime)
    assert 0 <= (created_at - first_fire).total_seconds() < 2


async def test_schedule_paused_or_deleted_over_the_api_does_not_fire(
    engine: AsyncEngine, settings: Settings, fleet: WorkerFleet, api: httpx.AsyncClient
) -> None:
    await sleeping_leader(engine, settings, fleet)
    async with engine.connect() as connection:
        second = int(
            (await connection.execute(text("SELECT extract(second FROM now())"))).scalar_one()
        )
    # Fire times a few seconds ahead, once a minute: time enough to pause and delete first.
    due, after = (second + 4) % 60, (second + 5) % 60
    for name in ("paused", "deleted"):
        response = await api.post(SCHEDULES, json=every_second(name, cron=f"{due} * * * * *"))
        assert response.status_code == 201, response.text
    # Fires a second after the other two would have: once it has fired, they would have too.
    response = await api.post(SCHEDULES, json=every_second("witness", cron=f"{after} * * * * *"))
    assert response.status_code == 201, response.text

    assert (await api.post(f"{SCHEDULES}/paused/disable")).status_code == 200
    assert (await api.delete(f"{SCHEDULES}/deleted")).status_code == 204

    async def witness_fired() -> bool:
        return bool(await jobs_of(engine, "witness"))

    await wait_until(
        witness_fired, timeout=20, what="the witness's job", diagnostics=fleet.diagnostics
    )
    assert await jobs_of(engine, "paused") == []
    assert await jobs_of(engine, "deleted") == []
