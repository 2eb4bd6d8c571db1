"""Schedules declared in code, synced into dl_schedules the way workers do at start."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.jobs.schedule_service import ScheduleService
from app.jobs.schedule_sync import sync_declared_schedules
from app.pipelines.registry import DeclaredSchedule
from app.settings import Settings
from tests.support.schedules import schedule_row, schedule_spec, set_columns


def declared(**overrides: object) -> DeclaredSchedule:
    values: dict[str, object] = {
        "name": "code-nightly",
        "cron": "0 3 * * *",
        "task": "test.echo",
        "queue": "etl.test",
        "lock_key": "nightly",
        "args": {"n": 1},
    }
    values.update(overrides)
    return DeclaredSchedule(**values)  # type: ignore[arg-type]


async def test_sync_creates_a_code_schedule_that_the_leader_baselines(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    result = await sync_declared_schedules(sessions, [declared()])

    assert result.by_outcome == {"created": ["code-nightly"]}
    row = await schedule_row(engine, "code-nightly")
    assert row["source"] == "code"
    assert row["enabled"] is True
    assert row["next_run_at"] is None  # the leader sets the baseline; nothing fires at once


async def test_sync_again_changes_nothing_and_keeps_the_operators_enabled_flag(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await sync_declared_schedules(sessions, [declared()])
    await set_columns(engine, "code-nightly", "enabled = false")
    before = await schedule_row(engine, "code-nightly")

    again = await sync_declared_schedules(sessions, [declared()])
    changed = await sync_declared_schedules(sessions, [declared(args={"n": 2})])

    assert again.by_outcome == {"unchanged": ["code-nightly"]}
    assert changed.by_outcome == {"updated": ["code-nightly"]}
    after = await schedule_row(engine, "code-nightly")
    assert after["enabled"] is False
    assert after["args"] == {"n": 2}
    assert after["updated_at"] > before["updated_at"]


async def test_sync_a_new_cron_clears_next_run_at_for_a_fresh_baseline(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await sync_declared_schedules(sessions, [declared()])
    await set_columns(engine, "code-nightly", "next_run_at = now() + interval '1 hour'")
    await sync_declared_schedules(sessions, [declared(args={"n": 3})])
    kept = await schedule_row(engine, "code-nightly")

    await sync_declared_schedules(sessions, [declared(cron="0  4 * * *")])

    assert kept["next_run_at"] is not None
    row = await schedule_row(engine, "code-nightly")
    assert row["cron"] == "0 4 * * *"
    assert row["next_run_at"] is None


async def test_sync_leaves_a_schedule_made_over_http_alone_and_skips_invalid_ones(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec(name="shared-name"))

    result = await sync_declared_schedules(
        sessions,
        [declared(name="shared-name"), declared(name="bad", cron="99 * * * *"), declared()],
    )

    assert result.by_outcome == {"taken": ["shared-name"], "created": ["code-nightly"]}
    assert "99 * * * *" in result.invalid["bad"]
    assert (await schedule_row(engine, "shared-name"))["source"] == "api"


async def test_sync_by_many_workers_at_once_makes_one_row(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    results = await asyncio.gather(
        *(sync_declared_schedules(sessions, [declared()]) for _ in range(5))
    )

    assert sum(len(r.by_outcome.get("created", [])) for r in results) == 1
    async with engine.connect() as connection:
        count = await connection.exec_driver_sql("SELECT count(*) FROM dl_schedules")
        assert count.scalar() == 1
