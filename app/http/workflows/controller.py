"""/api/v1/workflows: create a DAG of steps at once, look at it, cancel it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from app.domain.filters import LIST_LIMIT_DEFAULT
from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.jobs.docs import CursorQuery
from app.http.json_body import NOT_JSON, require_json
from app.http.workflows.schemas import (
    BAD_LIST_QUERY,
    BAD_WORKFLOW,
    CREATE_DESCRIPTION,
    KEY_CONFLICT,
    NOT_FOUND,
    LimitQuery,
    NameQuery,
    Workflow,
    WorkflowCanceled,
    WorkflowCreate,
    WorkflowCreated,
    WorkflowPage,
)
from app.jobs.workflow_service import WorkflowService

# Any text, checked as a UUID by the handler's type after the guard (see JOB_PATH).
WORKFLOW_PATH = "/{workflow_id:str}"


class WorkflowsController(Controller):
    """Workflows: named DAGs of steps, created in one transaction."""

    path = "/api/v1/workflows"
    tags = ["workflows"]
    dependencies = from_state("workflow_service")

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Create a workflow: every step of a DAG in one transaction",
        description=CREATE_DESCRIPTION,
        responses={400: BAD_WORKFLOW, 409: KEY_CONFLICT, 415: NOT_JSON},
        opt=requires("write"),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[WorkflowCreate],
        workflow_service: NamedDependency[WorkflowService],
    ) -> WorkflowCreated:
        """All steps or none; each step's job id and status (queued or waiting)."""
        require_json(request)
        return await workflow_service.create(data)

    @get(
        "/",
        summary="List workflows, newest first, keyset-paged",
        description="Each workflow with its status and steps per status, not its steps"
        " (`GET /api/v1/workflows/{workflow_id}` has them). `name` keeps one name's.",
        responses={400: BAD_LIST_QUERY},
        opt=requires("read"),
    )
    async def list_workflows(
        self,
        workflow_service: NamedDependency[WorkflowService],
        name: NameQuery = None,
        limit: LimitQuery = LIST_LIMIT_DEFAULT,
        cursor: CursorQuery = None,
    ) -> WorkflowPage:
        """Workflows, newest first, one page at a time."""
        return await workflow_service.list_workflows(name=name, cursor=cursor, limit=limit)

    @get(
        WORKFLOW_PATH,
        summary="A workflow with every step's status",
        responses={404: NOT_FOUND},
        opt=requires("read"),
    )
    async def get_workflow(
        self, workflow_id: FromPath[UUID], workflow_service: NamedDependency[WorkflowService]
    ) -> Workflow:
        """Steps by name with status, attempt, timings and what each depends on."""
        return await workflow_service.get(workflow_id)

    @post(
        WORKFLOW_PATH + "/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel the steps of a workflow that have not finished",
        responses={404: NOT_FOUND},
        opt=requires("write"),
    )
    async def cancel(
        self, workflow_id: FromPath[UUID], workflow_service: NamedDependency[WorkflowService]
    ) -> WorkflowCanceled:
        """Waiting and queued steps end canceled at once; running ones are asked to stop at
        their next checkpoint (and end canceled then)."""
        return await workflow_service.cancel(workflow_id)
