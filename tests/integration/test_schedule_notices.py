"""Schedule writes tell the leader through a notice sent when, and only when, they commit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.errors import ScheduleExistsError
from app.domain.schedules import ScheduleUpdate
from app.jobs.schedule_firing import CHANGES_CHANNEL
from app.jobs.schedule_service import ScheduleService
from app.settings import Settings
from tests.support.schedules import schedule_spec
from tests.support.waiting import wait_until


@pytest.fixture
async def notices(database_dsn: str) -> AsyncIterator[list[str]]:
    """The payloads of the notices on the schedules channel, in the order they came."""
    received: list[str] = []
    connection = await asyncpg.connect(database_dsn)
    await connection.add_listener(CHANGES_CHANNEL, lambda *args: received.append(args[3]))
    yield received
    await connection.close()


async def test_schedule_notices_follow_commits_and_never_rollbacks(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, notices: list[str]
) -> None:
    service = ScheduleService(sessions, settings)
    await service.create(schedule_spec(name="first"))
    with pytest.raises(ScheduleExistsError):
        await service.create(schedule_spec(name="first"))  # rolled back
    await service.update("first", ScheduleUpdate(args={"n": 2}))  # the template only
    await service.run_now("first")  # fire times unchanged
    await service.set_enabled("first", False)
    await service.delete("first")
    await service.create(schedule_spec(name="last"))

    # Notices come in commit order: once the last one is here, any other would be too.
    await wait_until(lambda: "last" in notices, timeout=10, what="the last notice")
    assert notices == ["first", "first", "first", "last"]
