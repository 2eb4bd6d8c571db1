"""Results by job id: what finished jobs returned, for callers that build on them.

A later step of a workflow reads its parents' results here; the HTTP views carry a job's
result with its status instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import dependencies
from app.db import jobs as job_rows
from app.domain.views import JobResult


async def read_results_in_session(
    session: AsyncSession, job_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, JobResult]:
    """Each existing job of `job_ids` with its status and result, by id, in the caller's
    session; an unknown id is left out."""
    rows = await job_rows.read_results(session, list(dict.fromkeys(job_ids)))
    return {
        row.job_id: JobResult(job_id=row.job_id, status=row.status, result=row.result)
        for row in rows
    }


async def parent_results_in_session(session: AsyncSession, job_id: uuid.UUID) -> dict[str, Any]:
    """The results of the jobs `job_id` depends on, by the parent's step name (a step of a
    workflow) or else its job id; a parent that did not succeed has None."""
    return {
        parent.step_name or str(parent.job_id): parent.result
        for parent in await dependencies.parent_results(session, job_id)
    }


@dataclass(frozen=True)
class JobResults:
    """Reads stored results in sessions of its own."""

    sessions: async_sessionmaker[AsyncSession]

    async def read(self, job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, JobResult]:
        """read_results_in_session() in a session of its own."""
        async with self.sessions() as session:
            return await read_results_in_session(session, job_ids)

    async def parents(self, job_id: uuid.UUID) -> dict[str, Any]:
        """parent_results_in_session() in a session of its own."""
        async with self.sessions() as session:
            return await parent_results_in_session(session, job_id)
