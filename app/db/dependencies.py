"""dl_job_dependencies and the dependency columns of dl_jobs: the statements the job manager
sends in the caller's transaction (flush, never commit). What happens when a parent ends is
the database's (app.db.dependency_functions).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Uuid

from app.db.models import DlJob, DlJobDependency
from app.db.sql_common import quote_ident
from app.domain.dependencies import RunAfter
from app.domain.states import UNSUCCESSFUL_STATUSES, JobStatus

jobs = cast(Table, DlJob.__table__)
edges = cast(Table, DlJobDependency.__table__)
_UUIDS = ARRAY(Uuid())


async def lock_parents(
    session: AsyncSession, parent_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Mark these jobs as having dependents and lock them until the transaction ends; their
    statuses by id (an unknown id is left out).

    The lock (FOR SHARE, after has_dependents is set) keeps a parent from ending between
    this read and the commit of its new dependent unseen by the release trigger: its
    final update waits, then fires the trigger, which sees the committed edges. Both steps
    lock in job_id order, so creators and finishers of the same jobs queue up.
    """
    ids = sorted(set(parent_ids))
    if not ids:
        return {}
    unmarked = (
        select(jobs.c.job_id)
        .where(jobs.c.job_id.in_(ids), jobs.c.has_dependents.is_(False))
        .order_by(jobs.c.job_id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE, as the UPDATE itself takes
    )
    await session.execute(
        update(jobs)
        .where(jobs.c.job_id.in_(unmarked.scalar_subquery()))
        .values(has_dependents=True)
    )
    rows = await session.execute(
        select(jobs.c.job_id, jobs.c.status)
        .where(jobs.c.job_id.in_(ids))
        .order_by(jobs.c.job_id)
        .with_for_update(read=True)
    )
    return {row.job_id: row.status for row in rows}


async def add_edges(session: AsyncSession, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Write (parent_id, child_id) edges (batched into multi-row INSERTs by the driver)."""
    if pairs:
        await session.execute(
            insert(edges), [{"parent_id": parent, "child_id": child} for parent, child in pairs]
        )


async def settle(
    session: AsyncSession, schema: str, job_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """dl_settle_waiting(): release the waiting jobs whose parents allow it, cancel those a
    parent's end dooms; every job's status afterwards, by id."""
    if not job_ids:
        return {}
    rows = await session.execute(
        text(
            f"SELECT job_id, status FROM {quote_ident(schema)}.dl_settle_waiting("
            "CAST(:jobs AS uuid[]))"
        ).bindparams(bindparam("jobs", type_=_UUIDS)),
        {"jobs": list(job_ids)},
    )
    return {row.job_id: row.status for row in rows}


@dataclass(frozen=True)
class Verdict:
    """Where a dependent stands with its parents."""

    # Every parent ended as it needs: it may run now.
    ready: bool
    # The first parent (by id) that ended failed, canceled or lost, when it needs success.
    blocker: uuid.UUID | None = None
    blocker_status: str | None = None


async def verdict(
    session: AsyncSession, depends_on: Sequence[uuid.UUID], run_after: str
) -> Verdict:
    """Read the parents of a dependent (the caller holds the dependent's row lock)."""
    rows = (
        await session.execute(
            select(jobs.c.job_id, jobs.c.status)
            .where(jobs.c.job_id.in_(list(depends_on)))
            .order_by(jobs.c.job_id)
        )
    ).all()
    unsuccessful = [r for r in rows if r.status in UNSUCCESSFUL_STATUSES]
    if run_after == RunAfter.SUCCEEDED and unsuccessful:
        return Verdict(False, unsuccessful[0].job_id, unsuccessful[0].status)
    needed = (
        {JobStatus.SUCCEEDED}
        if run_after == RunAfter.SUCCEEDED
        else {JobStatus.SUCCEEDED, *UNSUCCESSFUL_STATUSES}
    )
    return Verdict(all(r.status in needed for r in rows))


@dataclass(frozen=True)
class ParentResult:
    """A parent of a job: its step name when it is a step of the job's own workflow, its
    status and stored result."""

    job_id: uuid.UUID
    step_name: str | None
    status: str
    result: Any


async def parent_results(session: AsyncSession, job_id: uuid.UUID) -> list[ParentResult]:
    """The parents of `job_id` with their results, by parent id; none for an unknown job."""
    child = select(jobs.c.depends_on, jobs.c.workflow_id).where(jobs.c.job_id == job_id).subquery()
    parents = select(
        func.unnest(child.c.depends_on).label("parent_id"), child.c.workflow_id
    ).subquery()
    same_workflow = and_(
        jobs.c.workflow_id.is_not(None), jobs.c.workflow_id == parents.c.workflow_id
    )
    rows = await session.execute(
        select(
            jobs.c.job_id,
            case((same_workflow, jobs.c.step_name)).label("step_name"),
            jobs.c.status,
            jobs.c.result,
        )
        .join(parents, parents.c.parent_id == jobs.c.job_id)
        .order_by(jobs.c.job_id)
    )
    return [ParentResult(**row._asdict()) for row in rows]
