"""Fixtures shared by the integration tests: a second connection and SQLAlchemy sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_session_factory
from app.jobs.service import JobService
from app.settings import Settings


@pytest.fixture
async def db(database_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Another connection: sees only committed rows, competes for advisory locks."""
    connection = await asyncpg.connect(database_dsn)
    yield connection
    await connection.close()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on this test's database."""
    return create_session_factory(engine)


@pytest.fixture
async def service(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[JobService]:
    """The users' job service on this test's database, closed after the test."""
    job_service = JobService(sessions, settings)
    yield job_service
    await job_service.close()
