"""Fixtures for end-to-end tests: real `pgq run` workers on a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.jobs_db import JobsDb
from tests.support.workers import E2E_PIPELINE_MODULES, WorkerFleet, worker_fleet

# The test process validates task names when it enqueues, so it needs the test pipelines too.
load_pipelines([E2E_PIPELINE_MODULES])


@pytest.fixture
def jobs_db(engine: AsyncEngine, settings: Settings) -> JobsDb:
    """Enqueue and inspect jobs on this test's database."""
    return JobsDb(engine=engine, settings=settings)


@pytest.fixture
def fleet(project_root: Path, database_dsn: str, tmp_path: Path) -> Iterator[WorkerFleet]:
    """Worker subprocesses on this test's database; logs in tmp_path/workers."""
    with worker_fleet(project_root, database_dsn, tmp_path / "workers") as workers:
        yield workers
