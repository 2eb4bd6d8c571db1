"""WorkflowService: what users do with workflows (create, look, cancel); JobManager changes."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import workflows
from app.domain.errors import InvalidJobError, WorkflowNotFoundError
from app.domain.filters import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, PageCursor
from app.domain.workflows import (
    Workflow,
    WorkflowCanceled,
    WorkflowCreate,
    WorkflowCreated,
    WorkflowKey,
    WorkflowPage,
    WorkflowStep,
    WorkflowSummary,
    workflow_status,
)
from app.jobs.manager import JobManager
from app.jobs.validation import check_destinations, check_workflow
from app.settings import Settings


@dataclass
class WorkflowService:
    """The operations users perform on workflows."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    manager: JobManager = field(init=False)

    def __post_init__(self) -> None:
        self.manager = JobManager.from_settings(self.settings, self.sessions)

    async def create(self, spec: WorkflowCreate) -> WorkflowCreated:
        """Check the DAG and every step's job, then create them all in one transaction."""
        steps = check_workflow(spec)
        await check_destinations(
            [step.spec.job for step in steps], self.settings, bulk=True, items="steps"
        )
        return await self.manager.create_workflow(spec.name, steps, WorkflowKey.of(spec))

    async def get(self, workflow_id: uuid.UUID) -> Workflow:
        """The workflow with every step's status (GET /api/v1/workflows/{id})."""
        async with self.sessions() as session:
            return await read_workflow_in_session(session, workflow_id)

    async def list_workflows(
        self, *, name: str | None = None, cursor: str | None = None, limit: int = LIST_LIMIT_DEFAULT
    ) -> WorkflowPage:
        """Workflows (named `name`, if given), newest first, `limit` at a time after `cursor`,
        each with its status and steps per status (GET /api/v1/workflows)."""
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidJobError(f"limit must be 1..{LIST_LIMIT_MAX} (query parameter `limit`)")
        after = PageCursor.decode(cursor) if cursor else None
        async with self.sessions() as session:
            # One row more than asked tells whether another page exists.
            rows = await workflows.list_workflows(session, name=name, after=after, limit=limit + 1)
            page = rows[:limit]
            counts = await workflows.step_counts(session, [row.workflow_id for row in page])
        summaries = [
            WorkflowSummary(
                workflow_id=row.workflow_id,
                name=row.name,
                status=workflow_status(list(counts[row.workflow_id])),
                step_count=row.step_count,
                created_at=row.created_at,
                canceled_at=row.canceled_at,
                counts=dict(sorted(counts[row.workflow_id].items())),
            )
            for row in page
        ]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = PageCursor(page[-1].created_at, page[-1].workflow_id).encode()
        return WorkflowPage(workflows=summaries, next_cursor=next_cursor)

    async def cancel(self, workflow_id: uuid.UUID) -> WorkflowCanceled:
        """Cancel the steps that have not finished (JobManager.cancel_workflow)."""
        return await self.manager.cancel_workflow(workflow_id)


async def read_workflow_in_session(session: AsyncSession, workflow_id: uuid.UUID) -> Workflow:
    """The workflow as stored now; WorkflowNotFoundError for an unknown id."""
    row = await workflows.get_workflow(session, workflow_id)
    if row is None:
        raise WorkflowNotFoundError(f"workflow {workflow_id} not found")
    steps = await workflows.steps(session, workflow_id)
    names = {step.job_id: step.step_name or str(step.job_id) for step in steps}
    views = [
        WorkflowStep(
            name=step.step_name or str(step.job_id),
            job_id=step.job_id,
            status=step.status,
            queue=step.queue,
            task=step.task,
            depends_on=[names.get(parent, str(parent)) for parent in step.depends_on or ()],
            run_after=step.run_after,
            attempt=step.attempt,
            max_attempts=step.max_attempts,
            error=step.error,
            canceled_by=step.canceled_by,
            created_at=step.created_at,
            started_at=step.started_at,
            finished_at=step.finished_at,
        )
        for step in steps
    ]
    statuses = [step.status for step in views]
    return Workflow(
        workflow_id=row.workflow_id,
        name=row.name,
        status=workflow_status(statuses),
        created_at=row.created_at,
        canceled_at=row.canceled_at,
        counts=dict(sorted(Counter(statuses).items())),
        steps=views,
    )
