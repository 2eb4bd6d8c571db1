"""The bodies of /api/v1/workflows: the domain's workflow types, and the documented errors."""

from __future__ import annotations

from typing import Annotated

from litestar.openapi.spec import Example
from litestar.params import Parameter

from app.domain.filters import LIST_LIMIT_MAX
from app.domain.workflows import (
    Workflow,
    WorkflowCanceled,
    WorkflowCreate,
    WorkflowCreated,
    WorkflowPage,
    WorkflowStep,
    WorkflowStepCreate,
    WorkflowStepCreated,
    WorkflowSummary,
)
from app.http.errors import error_response

__all__ = [
    "BAD_LIST_QUERY",
    "BAD_WORKFLOW",
    "CREATE_DESCRIPTION",
    "KEY_CONFLICT",
    "NOT_FOUND",
    "LimitQuery",
    "NameQuery",
    "Workflow",
    "WorkflowCanceled",
    "WorkflowCreate",
    "WorkflowCreated",
    "WorkflowPage",
    "WorkflowStep",
    "WorkflowStepCreate",
    "WorkflowStepCreated",
    "WorkflowSummary",
]

_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
BAD_WORKFLOW = error_response(
    400,
    "The workflow is invalid: a cycle, a missing step, an unknown job, a bad step",
    "the steps depend on each other in a cycle: load -> transform -> load (each waits for the"
    " one before it) (field `steps`)",
)
NOT_FOUND = error_response(404, "No workflow has this id", f"workflow {_ID} not found")
KEY_CONFLICT = error_response(
    409,
    "The idempotency_key is held by a workflow created from a different request"
    " (`workflow_id` names it)",
    f"idempotency_key 'nightly-2026-12-09' is already used by workflow {_ID}, created from a"
    " different request; send the same request to get that workflow, or use another key"
    " (field `idempotency_key`)",
    workflow_id=_ID,
)
CREATE_DESCRIPTION = """\
Creates every step of a named DAG in one transaction: all of them, or none. A step is a job
(`job`, the body of `POST /api/v1/jobs/trigger` without `idempotency_key` or `coalescing`)
with a name unique in the workflow; `depends_on` lists the steps it waits for by name, or
jobs outside the workflow by id. A step without parents is queued at once; the others are
`waiting` until every parent succeeded (`run_after: "any"`: until every parent ended), and
are canceled, naming the parent, when one they need ends failed, canceled or lost.

With an `idempotency_key`, sending the same request again (its answer was lost, say)
answers the workflow it created, `created: false`, with each step's status now; a different
request under the key is a 409 naming the workflow that holds it (`workflow_id`). "The same"
is the request as decoded, defaults filled in and object keys in any order.

A cycle, a step name used twice, a `depends_on` naming no step and no job, a job id of no
job, or a step whose job is invalid is a 400 naming it (`steps[i]...`). See
docs/workflows.md.
"""
BAD_LIST_QUERY = error_response(
    400,
    "A query parameter is invalid",
    "invalid cursor (query parameter `cursor`): pass `next_cursor` of the previous page unchanged",
)
LimitQuery = Annotated[
    int,
    Parameter(
        description="Workflows per page", ge=1, le=LIST_LIMIT_MAX, examples=[Example(value=50)]
    ),
]
NameQuery = Annotated[
    str | None,
    Parameter(
        description="Only workflows of this name",
        min_length=1,
        max_length=200,
        examples=[Example(value="nightly-rates")],
    ),
]
