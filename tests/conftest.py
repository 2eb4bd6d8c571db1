"""Shared fixtures: one PostgreSQL server per session, a fresh migrated database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.pipelines.registry import load_pipelines
from app.settings import Settings, load_settings
from tests.support.databases import (
    TestServer,
    create_database,
    drop_database,
    migrated_template,
    test_server,
    unique_name,
)

load_pipelines(["tests.support.pipelines"])


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


def settings_for(dsn: str, **overrides: object) -> Settings:
    """Service settings pointed at one test database."""
    return load_settings(database_url=dsn, **overrides)


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
    return Path(__file__).resolve().parents[1]
