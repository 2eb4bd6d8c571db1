"""dl_workflows and a workflow's steps (dl_jobs rows with its workflow_id); flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.events import logged_with
from app.db.models import DlJob, DlWorkflow
from app.db.sql_common import after_cursor, cutoff
from app.domain.filters import PageCursor
from app.domain.states import JobEvent, JobStatus

jobs = cast(Table, DlJob.__table__)
workflows = cast(Table, DlWorkflow.__table__)


async def insert_workflow(
    session: AsyncSession,
    workflow_id: uuid.UUID,
    name: str,
    step_count: int,
    *,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
) -> bool:
    """Write the workflow's row; False when another workflow holds the idempotency_key.

    ON CONFLICT waits for a transaction writing the same key: once it commits this one
    finds its workflow, and if it rolls back this one takes the key.
    """
    written = await session.execute(
        pg_insert(workflows)
        .values(
            workflow_id=workflow_id,
            name=name,
            step_count=step_count,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
        )
        .on_conflict_do_nothing(
            index_elements=[workflows.c.idempotency_key],
            index_where=workflows.c.idempotency_key.is_not(None),
        )
        .returning(workflows.c.workflow_id)
    )
    return written.first() is not None


@dataclass(frozen=True)
class KeyHolder:
    """The workflow that holds an idempotency_key, and the fingerprint of its request."""

    workflow_id: uuid.UUID
    name: str
    fingerprint: str | None


async def key_holder(session: AsyncSession, idempotency_key: str) -> KeyHolder | None:
    """The workflow created under `idempotency_key`, if one was."""
    row = (
        await session.execute(
            select(
                workflows.c.workflow_id, workflows.c.name, workflows.c.request_fingerprint
            ).where(workflows.c.idempotency_key == idempotency_key)
        )
    ).first()
    return None if row is None else KeyHolder(row.workflow_id, row.name, row.request_fingerprint)


async def get_workflow(session: AsyncSession, workflow_id: uuid.UUID) -> DlWorkflow | None:
    """The workflow with this id, if any."""
    return await session.get(DlWorkflow, workflow_id, populate_existing=True)


async def steps(session: AsyncSession, workflow_id: uuid.UUID) -> Sequence[DlJob]:
    """The workflow's steps (uq_dl_jobs_workflow_step finds them), by name."""
    rows = await session.scalars(
        select(DlJob)
        .where(jobs.c.workflow_id == workflow_id)
        .order_by(jobs.c.step_name)
        .execution_options(populate_existing=True)
    )
    return rows.all()


async def list_workflows(
    session: AsyncSession, *, name: str | None, after: PageCursor | None, limit: int
) -> Sequence[DlWorkflow]:
    """Up to `limit` workflows (named `name`, if given), newest first, strictly after
    `after`; along ix_dl_workflows_created_at (ix_dl_workflows_name_created_at by name)."""
    statement = select(DlWorkflow)
    if name is not None:
        statement = statement.where(workflows.c.name == name)
    if after is not None:
        statement = statement.where(
            after_cursor(workflows.c.created_at, workflows.c.workflow_id, after)
        )
    ordered = statement.order_by(workflows.c.created_at.desc(), workflows.c.workflow_id.desc())
    return (await session.scalars(ordered.limit(limit))).all()


async def step_counts(
    session: AsyncSession, workflow_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Steps per status of each workflow (uq_dl_jobs_workflow_step finds them)."""
    rows = await session.execute(
        select(jobs.c.workflow_id, jobs.c.status, func.count())
        .where(jobs.c.workflow_id.in_(workflow_ids))
        .group_by(jobs.c.workflow_id, jobs.c.status)
    )
    counts: dict[uuid.UUID, dict[str, int]] = {workflow_id: {} for workflow_id in workflow_ids}
    for workflow_id, status, count in rows:
        counts[workflow_id][str(status)] = count
    return counts


@dataclass(frozen=True)
class CanceledSteps:
    """Steps a workflow cancel ended at once; their dispatches to withdraw."""

    job_ids: list[uuid.UUID]
    pgq_job_ids: list[int]


async def cancel_unstarted_steps(session: AsyncSession, workflow_id: uuid.UUID) -> CanceledSteps:
    """waiting or queued steps -> canceled, locked in job_id order, each with its event.

    A running step is not touched here: its finish may be holding a child's lock this
    statement wants (the release trigger), and it would hold its own row while waiting for
    ours. The caller asks running steps to stop in a transaction of their own.
    """
    unstarted = (
        select(jobs.c.job_id)
        .where(
            jobs.c.workflow_id == workflow_id,
            jobs.c.status.in_([JobStatus.WAITING, JobStatus.QUEUED]),
        )
        .order_by(jobs.c.job_id)
        .with_for_update(key_share=True)
        .scalar_subquery()
    )
    change = (
        update(jobs)
        .where(
            jobs.c.job_id.in_(unstarted),
            jobs.c.status.in_([JobStatus.WAITING, JobStatus.QUEUED]),
        )
        .values(
            status=JobStatus.CANCELED,
            cancel_requested=True,
            finished_at=func.now(),
            updated_at=func.now(),
        )
        .returning(jobs.c.job_id, jobs.c.attempt, jobs.c.pgq_job_id)
    )
    rows = (
        await session.execute(logged_with(change, JobEvent.CANCELED, {"workflow_canceled": True}))
    ).all()
    await session.execute(
        update(workflows)
        .where(workflows.c.workflow_id == workflow_id, workflows.c.canceled_at.is_(None))
        .values(canceled_at=func.now())
    )
    return CanceledSteps(
        job_ids=[row.job_id for row in rows],
        pgq_job_ids=[row.pgq_job_id for row in rows if row.pgq_job_id is not None],
    )


async def running_steps(session: AsyncSession, workflow_id: uuid.UUID) -> list[uuid.UUID]:
    """The workflow's running steps."""
    rows = await session.execute(
        select(jobs.c.job_id).where(
            jobs.c.workflow_id == workflow_id, jobs.c.status == JobStatus.RUNNING
        )
    )
    return [row.job_id for row in rows]


async def delete_emptied(session: AsyncSession, retention: timedelta, limit: int) -> int:
    """Delete up to `limit` workflows created before now() - retention whose steps retention
    already deleted (each step goes with the finished jobs); how many went.

    The oldest first, along ix_dl_workflows_created_at; each step lookup is one probe of
    uq_dl_jobs_workflow_step. A workflow with a step left (one still running, say) stays.
    """
    emptied = (
        select(workflows.c.workflow_id)
        .where(
            workflows.c.created_at < cutoff(retention),
            ~exists().where(jobs.c.workflow_id == workflows.c.workflow_id),
        )
        .order_by(workflows.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(
        delete(workflows)
        .where(workflows.c.workflow_id.in_(emptied.scalar_subquery()))
        .returning(workflows.c.workflow_id)
    )
    return len(result.all())
