"""Plugin: one PostgreSQL server per session and a fresh migrated database per test.

Fixtures: `pg_server`, `template_db`, `database_dsn`, `settings`, `engine`, `project_root`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.settings import Settings
from tests.support.databases import (
    TestServer,
    create_database,
    drop_database,
    migrated_template,
    settings_for,
    test_server,
    unique_name,
)
from tests.support.paths import PROJECT_ROOT


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestServer]:
    """The session's PostgreSQL server (embedded unless DATABASE_URL is set)."""
    with test_server(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
async def template_db(pg_server: TestServer) -> AsyncIterator[str]:
    """A migrated template database; each test clones it, which is fast."""
    name = await migrated_template(pg_server, "public")
    yield name
    await drop_database(pg_server, name)


@pytest.fixture
async def database_dsn(pg_server: TestServer, template_db: str) -> AsyncIterator[str]:
    """A fresh migrated database for one test (plain postgresql:// DSN)."""
    name = unique_name("dl_test")
    dsn = await create_database(pg_server, name, template=template_db)
    yield dsn
    await drop_database(pg_server, name)


@pytest.fixture
def settings(database_dsn: str) -> Settings:
    """Settings for this test's database."""
    return settings_for(database_dsn)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on this test's database."""
    engine = create_engine(settings, pool_size=20)
    yield engine
    await engine.dispose()


@pytest.fixture
def project_root() -> Path:
    """The repository root."""
    return PROJECT_ROOT
