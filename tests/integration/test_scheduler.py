"""The leader's scheduler pass, called directly: fire, baseline, disable, isolate failures."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.connections import WORKER_POOL, application_name, worker_pool
from app.db.engine import create_session_factory
from app.domain.errors import InvalidJobError
from app.domain.schedules import ScheduleUpdate
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_in_session
from app.jobs.schedule_firing import FireKind, instance_key
from app.jobs.schedule_service import ScheduleService
from app.settings import Settings
from tests.support.schedules import jobs_of, schedule_row, schedule_spec, set_columns
from worker.maintenance.config import MaintenanceConfig
from worker.maintenance.scheduler import FIRE_SLACK_SEC, Scheduler, SchedulerConfig


def scheduler(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> Scheduler:
    config = MaintenanceConfig.from_settings(settings).scheduler
    return Scheduler(sessions, settings, worker_id="test-leader", config=config)


async def test_scheduler_baselines_a_null_next_run_at_without_firing(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = NULL")

    result = await scheduler(sessions, settings).run_once()

    assert result.counts == {FireKind.BASELINED: 1}
    row = await schedule_row(engine, "every-minute")
    assert row["db_now"] < row["next_run_at"] <= row["db_now"] + timedelta(minutes=1)
    assert row["next_run_at"].second == 0
    assert await jobs_of(engine, "every-minute") == []
    assert result.next_due_in_sec is not None
    assert 0 < result.next_due_in_sec <= 60


async def test_scheduler_fires_a_due_schedule_once_and_moves_next_run_at_on(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    created = await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = date_trunc('minute', now())")
    due = (await schedule_row(engine, "every-minute"))["next_run_at"]

    first = await scheduler(sessions, settings).run_once()
    second = await scheduler(sessions, settings).run_once()

    assert first.counts == {FireKind.FIRED: 1}
    assert second.counts == {}
    jobs = await jobs_of(engine, "every-minute")
    assert len(jobs) == 1
    job = jobs[0]
    assert job["status"] == "queued"
    assert job["args"] == {"n": 1}
    assert job["lock_key"] == "schedule-key"
    assert job["idempotency_key"] == instance_key(created.schedule_id, due)
    row = await schedule_row(engine, "every-minute")
    assert row["last_job_id"] == job["job_id"]
    assert row["last_error"] is None
    assert row["last_run_at"] is not None
    assert row["db_now"] < row["next_run_at"] <= due + timedelta(minutes=1)


async def test_scheduler_fires_once_for_a_missed_window_after_downtime(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec())
    # An hour of missed minutes: sixty ticks' worth.
    await set_columns(
        engine, "every-minute", "next_run_at = date_trunc('minute', now()) - interval '1 hour'"
    )

    result = await scheduler(sessions, settings).run_once()
    again = await scheduler(sessions, settings).run_once()

    assert result.counts == {FireKind.FIRED: 1}
    assert again.counts == {}
    assert len(await jobs_of(engine, "every-minute")) == 1
    row = await schedule_row(engine, "every-minute")
    assert row["db_now"] < row["next_run_at"] <= row["db_now"] + timedelta(minutes=1)


async def test_scheduler_firing_the_same_instance_again_returns_the_first_job(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = date_trunc('minute', now())")
    due = (await schedule_row(engine, "every-minute"))["next_run_at"]
    await scheduler(sessions, settings).run_once()
    # As if a stale leader still saw the old fire time: the idempotency key catches it.
    await set_columns(engine, "every-minute", "next_run_at = :due", due=due)

    result = await scheduler(sessions, settings).run_once()

    assert result.counts == {FireKind.FIRED: 1}
    assert len(await jobs_of(engine, "every-minute")) == 1


async def test_scheduler_instance_fired_before_its_template_changed_is_not_fired_again(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """The instance's key already holds a job of the old template (a different request):
    that job is the instance's, and the schedule moves on instead of failing every pass."""
    service = ScheduleService(sessions, settings)
    await service.create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = date_trunc('minute', now())")
    due = (await schedule_row(engine, "every-minute"))["next_run_at"]
    await scheduler(sessions, settings).run_once()
    [first] = await jobs_of(engine, "every-minute")
    await service.update("every-minute", ScheduleUpdate(args={"n": 2}))
    await set_columns(engine, "every-minute", "next_run_at = :due", due=due)

    result = await scheduler(sessions, settings).run_once()

    assert result.counts == {FireKind.FIRED: 1}
    assert [job["job_id"] for job in await jobs_of(engine, "every-minute")] == [first["job_id"]]
    row = await schedule_row(engine, "every-minute")
    assert (row["last_job_id"], row["last_error"]) == (first["job_id"], None)
    assert row["next_run_at"] > due


def old_instance_key(schedule_id: uuid.UUID, fire_time: datetime) -> str:
    """A fire time's idempotency_key before the reserved namespace (`dl:`) existed."""
    return f"schedule:{schedule_id}:{fire_time.astimezone(UTC).isoformat()}"


async def test_scheduler_fire_time_cannot_be_preempted_by_a_client(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """A client that creates a job under a fire time's key first is refused (the key is in
    the service's namespace); under the key's old format it gets a job of its own, and the
    schedule still fires its own job."""
    created = await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = date_trunc('minute', now())")
    due = (await schedule_row(engine, "every-minute"))["next_run_at"]

    def callback(**fields: str) -> JobCreate:
        return JobCreate(queue="etl.test", task="noop", lock_key="attacker", **fields)

    for fields in (
        {"idempotency_key": instance_key(created.schedule_id, due)},
        {"producer": "dl:schedule:every-minute"},
    ):
        async with sessions() as session, session.begin():
            with pytest.raises(InvalidJobError, match="reserved"):
                await enqueue_in_session(session, callback(**fields), settings)
    async with sessions() as session, session.begin():
        old_format = await enqueue_in_session(
            session,
            callback(idempotency_key=old_instance_key(created.schedule_id, due)),
            settings,
        )
    assert old_format.created is True

    result = await scheduler(sessions, settings).run_once()

    assert result.counts == {FireKind.FIRED: 1}
    jobs = await jobs_of(engine, "every-minute")
    assert [(job["idempotency_key"], job["args"]) for job in jobs] == [
        (instance_key(created.schedule_id, due), {"n": 1})
    ]
    assert jobs[0]["job_id"] != old_format.job_id
    assert (await schedule_row(engine, "every-minute"))["last_job_id"] == jobs[0]["job_id"]


async def test_scheduler_fire_time_fired_under_the_old_key_does_not_fire_again(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """The upgrade: a fire time fired before the key moved to `dl:` is not fired again,
    because next_run_at (moved on in the firing's transaction) says it was fired."""
    created = await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(
        engine, "every-minute", "next_run_at = date_trunc('minute', now()) - interval '1 minute'"
    )
    fired = (await schedule_row(engine, "every-minute"))["next_run_at"]
    # What the previous version left after firing `fired`: its job under the old key and
    # producer, and next_run_at on the following minute (due now).
    async with sessions() as session, session.begin():
        old_job = await enqueue_in_session(
            session,
            JobCreate(
                queue="etl.test",
                task="test.echo",
                lock_key="schedule-key",
                args={"n": 1},
                idempotency_key=old_instance_key(created.schedule_id, fired),
                producer="schedule:every-minute",
            ),
            settings,
        )
    await set_columns(
        engine,
        "every-minute",
        "next_run_at = :next, last_job_id = :job_id",
        next=fired + timedelta(minutes=1),
        job_id=old_job.job_id,
    )

    first = await scheduler(sessions, settings).run_once()
    again = await scheduler(sessions, settings).run_once()

    assert first.counts == {FireKind.FIRED: 1}
    assert again.counts == {}
    jobs = await jobs_of(engine, "every-minute")
    assert [job["idempotency_key"] for job in jobs] == [
        instance_key(created.schedule_id, fired + timedelta(minutes=1))
    ]
    async with engine.connect() as connection:
        total = await connection.scalar(text("SELECT count(*) FROM dl_jobs"))
    assert total == 2  # the old job and the next minute's: `fired` was not fired again


async def test_scheduler_disables_an_unreadable_cron_and_records_the_error_once(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    service = ScheduleService(sessions, settings)
    await service.create(schedule_spec(name="bad-cron"))
    await service.create(schedule_spec(name="bad-zone"))
    await set_columns(engine, "bad-cron", "cron = '61 * * * *', next_run_at = now()")
    await set_columns(engine, "bad-zone", "timezone = 'Mars/Olympus', next_run_at = now()")

    result = await scheduler(sessions, settings).run_once()
    bad_cron = await schedule_row(engine, "bad-cron")
    bad_zone = await schedule_row(engine, "bad-zone")
    again = await scheduler(sessions, settings).run_once()

    assert result.counts == {FireKind.DISABLED: 2}
    assert again.counts == {}
    assert bad_cron["enabled"] is False
    assert "61 * * * *" in bad_cron["last_error"]
    assert bad_zone["enabled"] is False
    assert "Mars/Olympus" in bad_zone["last_error"]
    # Recorded once: the second pass did not touch the rows.
    assert (await schedule_row(engine, "bad-cron"))["updated_at"] == bad_cron["updated_at"]
    assert (await schedule_row(engine, "bad-zone"))["updated_at"] == bad_zone["updated_at"]
    assert await jobs_of(engine, "bad-cron") == []


async def test_scheduler_a_failing_row_never_stops_the_others(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    service = ScheduleService(sessions, settings)
    for name in ("a-good", "b-unknown-task", "c-explodes", "d-good"):
        await service.create(schedule_spec(name=name, lock_key=name, cron="0 * * * *"))
    await set_columns(engine, "b-unknown-task", "task = 'no.such.task'")
    # A database error inside one schedule's transaction (a trigger refusing its job).
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE FUNCTION refuse_job() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.lock_key = 'c-explodes' THEN RAISE EXCEPTION 'refused'; END IF;"
            " RETURN NEW; END $$"
        )
        await connection.exec_driver_sql(
            "CREATE TRIGGER refuse_job BEFORE INSERT ON dl_jobs"
            " FOR EACH ROW EXECUTE FUNCTION refuse_job()"
        )
    await set_columns(engine, "a-good", "next_run_at = now()")
    await set_columns(engine, "b-unknown-task", "next_run_at = now()")
    await set_columns(engine, "c-explodes", "next_run_at = now()")
    await set_columns(engine, "d-good", "next_run_at = now()")
    patient = Scheduler(sessions, settings, "test-leader", SchedulerConfig(period_sec=7200))

    result = await patient.run_once()

    assert result.counts == {FireKind.FIRED: 2, FireKind.SKIPPED_INSTANCE: 1}
    assert result.failed == 1
    assert len(await jobs_of(engine, "a-good")) == 1
    assert len(await jobs_of(engine, "d-good")) == 1
    unknown = await schedule_row(engine, "b-unknown-task")
    assert unknown["enabled"] is True
    assert "no.such.task" in unknown["last_error"]
    assert unknown["next_run_at"] > unknown["db_now"]  # this instance skipped, not retried
    exploded = await schedule_row(engine, "c-explodes")
    assert "refused" in exploded["last_error"]
    assert exploded["next_run_at"] <= exploded["db_now"]  # still due: retried next pass
    assert await jobs_of(engine, "c-explodes") == []
    # The failed row is still due, yet the leader is not told to look again at once (it
    # waits a period for that row), nor does the row hold back the others' next hour.
    assert result.next_due_in_sec is not None
    assert 0 < result.next_due_in_sec <= 3600


async def test_scheduler_two_leaders_at_once_fire_each_instance_once(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    service = ScheduleService(sessions, settings)
    names = [f"s{index:02d}" for index in range(30)]
    for name in names:
        await service.create(schedule_spec(name=name, lock_key=name))
    async with engine.begin() as connection:
        await connection.exec_driver_sql("UPDATE dl_schedules SET next_run_at = now()")

    results = await asyncio.gather(*(scheduler(sessions, settings).run_once() for _ in range(3)))

    assert sum(result.fired for result in results) == len(names)
    for name in names:
        assert len(await jobs_of(engine, name)) == 1, name


async def test_scheduler_waits_for_a_future_fire_time_by_the_database_clock(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = now() + interval '30 seconds'")

    result = await scheduler(sessions, settings).run_once()

    assert result.counts == {}
    assert result.next_due_in_sec is not None
    assert 25 < result.next_due_in_sec <= 30


async def test_scheduler_service_sleeps_until_the_next_fire_time_within_its_period(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = now() + interval '30 seconds'")
    patient = Scheduler(sessions, settings, "test-leader", SchedulerConfig(period_sec=60))

    hasty = Scheduler(sessions, settings, "test-leader", SchedulerConfig(period_sec=1))

    assert 25 < await patient.pass_then_wait() <= 30 + FIRE_SLACK_SEC
    assert await hasty.pass_then_wait() == 1
    await set_columns(engine, "every-minute", "enabled = false")
    assert await patient.pass_then_wait() == 60  # nothing enabled: a period


async def test_scheduler_service_fires_a_due_schedule_at_the_start_of_a_term(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = date_trunc('minute', now())")
    service = scheduler(sessions, settings)
    stopped = asyncio.Event()

    async def stop_after_this_pass() -> None:
        stopped.set()

    await service.run(stopped, stop_after_this_pass)

    assert len(await jobs_of(engine, "every-minute")) == 1


async def test_scheduler_pass_on_dead_pooled_connections_runs_again_on_new_ones(
    engine: AsyncEngine, settings: Settings
) -> None:
    # The worker pool lends connections without a round trip; the server has closed them since.
    upkeep = worker_pool(settings, "dead-pool")
    try:
        sessions = create_session_factory(upkeep)
        service = scheduler(sessions, settings)
        await service.run_once()  # the pool now holds a connection
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :name"
                ),
                {"name": application_name(WORKER_POOL, "dead-pool")},
            )
        await ScheduleService(create_session_factory(engine), settings).create(schedule_spec())
        await set_columns(engine, "every-minute", "next_run_at = date_trunc('minute', now())")
        stopped = asyncio.Event()

        async def stop_after_this_pass() -> None:
            stopped.set()

        await service.run(stopped, stop_after_this_pass)

        assert len(await jobs_of(engine, "every-minute")) == 1
    finally:
        await upkeep.dispose()
