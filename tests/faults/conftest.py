"""Fault scenarios reuse the end-to-end fixtures: a fresh database and a worker fleet per test."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from app.db.engine import create_session_factory
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_many_in_session
from tests.e2e.conftest import fleet, jobs_db
from tests.faults.checks import FIGURES_FILE
from tests.support.jobs_db import JobsDb

__all__ = ["enqueue_all", "fleet", "jobs_db"]


@pytest.fixture(scope="session", autouse=True)
def _fresh_figures_file() -> None:
    """test-output/faults.txt holds this session's figures only."""
    FIGURES_FILE.unlink(missing_ok=True)


async def enqueue_all(jobs_db: JobsDb, specs: Sequence[JobCreate]) -> list[uuid.UUID]:
    """Create every job in one transaction; their ids in order."""
    async with create_session_factory(jobs_db.engine)() as session, session.begin():
        results = await enqueue_many_in_session(session, specs, jobs_db.settings)
    return [result.job_id for result in results]
