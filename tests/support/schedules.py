"""Schedule specs for tests, and a shortcut to make a stored schedule due now."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.schedules import ScheduleCreate


def schedule_spec(**overrides: Any) -> ScheduleCreate:
    """A valid every-minute schedule of the test.echo pipeline."""
    values: dict[str, Any] = {
        "name": "every-minute",
        "cron": "* * * * *",
        "queue": "etl.test",
        "task": "test.echo",
        "lock_key": "schedule-key",
        "args": {"n": 1},
    }
    values.update(overrides)
    return ScheduleCreate(**values)


async def set_columns(engine: AsyncEngine, name: str, assignments: str, **params: Any) -> None:
    """UPDATE dl_schedules SET <assignments> for one schedule, as an operator's SQL would."""
    async with engine.begin() as connection:
        await connection.execute(
            text(f"UPDATE dl_schedules SET {assignments} WHERE name = :name"),
            {"name": name, **params},
        )


async def schedule_row(engine: AsyncEngine, name: str) -> dict[str, Any]:
    """The stored row, with the database clock as `db_now`."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT *, now() AS db_now FROM dl_schedules WHERE name = :name"), {"name": name}
        )
        row = result.mappings().one()
    return dict(row)


async def jobs_of(engine: AsyncEngine, name: str) -> list[dict[str, Any]]:
    """The jobs a schedule created, oldest first."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT job_id, idempotency_key, producer, status, created_at, args, lock_key"
                " FROM dl_jobs WHERE producer = :producer ORDER BY created_at, job_id"
            ),
            {"producer": f"dl:schedule:{name}"},
        )
        return [dict(row) for row in result.mappings()]
