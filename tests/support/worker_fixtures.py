"""Plugin: real `pgq run` workers and a view of their jobs, on this test's database.

Fixtures: `jobs_db` (enqueue and inspect jobs) and `fleet` (worker subprocesses), used by
the e2e and faults tiers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import Settings
from tests.support.jobs_db import JobsDb
from tests.support.workers import WorkerFleet, worker_fleet


@pytest.fixture
def jobs_db(engine: AsyncEngine, settings: Settings) -> JobsDb:
    """Enqueue and inspect jobs on this test's database."""
    return JobsDb(engine=engine, settings=settings)


@pytest.fixture
def fleet(project_root: Path, database_dsn: str, tmp_path: Path) -> Iterator[WorkerFleet]:
    """Worker subprocesses on this test's database; logs in tmp_path/workers."""
    with worker_fleet(project_root, database_dsn, tmp_path / "workers") as workers:
        yield workers
