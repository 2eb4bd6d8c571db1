"""Workflows: a named DAG of steps created in one transaction, its checks and its views.

A step is a job (every rule and invariant of a job holds for it) with a name unique in its
workflow; it depends on other steps by name, or on jobs outside the workflow by id.
`plan` checks the shape before anything is written: duplicate and unknown names, cycles
(naming the steps of one), the step cap.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import msgspec

from app.domain.dependencies import MAX_DEPENDS_ON, RunAfter
from app.domain.errors import InvalidJobError
from app.domain.spec import NAME_PATTERN, JobCreate, Key, Label

# Steps one workflow may have (the request body's size limit may bind first: about 100 bytes
# a step).
MAX_WORKFLOW_STEPS = 10_000

StepName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=200, pattern=NAME_PATTERN, examples=["extract-1"]),
]


class WorkflowStepCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One step: its job, and the steps (by name) or jobs (by id) it waits for."""

    name: StepName
    job: JobCreate
    depends_on: Annotated[list[str], msgspec.Meta(max_length=MAX_DEPENDS_ON)] = msgspec.field(
        default_factory=list
    )
    run_after: RunAfter = RunAfter.SUCCEEDED


class WorkflowCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A named DAG of steps, created at once: all of them, or none.

    With an idempotency_key, sending the same request again finds the workflow it created;
    a different request under the key is a conflict (WorkflowKeyConflictError).
    """

    name: Label
    steps: Annotated[
        list[WorkflowStepCreate], msgspec.Meta(min_length=1, max_length=MAX_WORKFLOW_STEPS)
    ]
    idempotency_key: Key | None = None


def request_fingerprint(spec: WorkflowCreate) -> str:
    """What makes two workflow requests "the same" for an idempotency_key: the request as
    decoded (defaults filled in, object keys sorted), without the key itself."""
    canonical = msgspec.json.encode(
        msgspec.structs.replace(spec, idempotency_key=None), order="sorted"
    )
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class WorkflowKey:
    """A workflow request's idempotency_key, with its request's fingerprint."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, spec: WorkflowCreate) -> WorkflowKey | None:
        """The request's key, or None when it has none."""
        if spec.idempotency_key is None:
            return None
        return cls(spec.idempotency_key, request_fingerprint(spec))


@dataclass(frozen=True)
class PlannedStep:
    """A step with its parents resolved: steps of the workflow by index, other jobs by id."""

    index: int
    spec: WorkflowStepCreate
    parent_steps: tuple[int, ...]
    parent_jobs: tuple[uuid.UUID, ...]
    # Where each of parent_jobs is in the step's depends_on (to name it in an error).
    job_positions: tuple[int, ...]
    has_children: bool


def plan(spec: WorkflowCreate) -> list[PlannedStep]:
    """The steps in the order given, each with its parents; InvalidJobError naming what is
    wrong: a duplicate name, an unknown step, a step named twice in one depends_on, the
    step's job carrying depends_on or run_after of its own, or a cycle."""
    if not 1 <= len(spec.steps) <= MAX_WORKFLOW_STEPS:
        raise InvalidJobError(
            f"a workflow has 1 to {MAX_WORKFLOW_STEPS} steps, not {len(spec.steps)} (field `steps`)"
        )
    index_of: dict[str, int] = {}
    for index, step in enumerate(spec.steps):
        first = index_of.setdefault(step.name, index)
        if first != index:
            field = f"steps[{index}].name"
            raise InvalidJobError(
                f"step name {step.name!r} is taken by steps[{first}] (field `{field}`)"
            )
    parents: list[tuple[tuple[int, ...], tuple[uuid.UUID, ...], tuple[int, ...]]] = []
    has_children = [False] * len(spec.steps)
    for index, step in enumerate(spec.steps):
        where = f"steps[{index}]"
        for key in ("idempotency_key", "coalescing"):
            if getattr(step.job, key):
                # One step of a DAG is neither found again by a key nor joined by a trigger.
                raise InvalidJobError(f"a step's job cannot set {key} (field `{where}.job.{key}`)")
        if step.job.depends_on is not None or step.job.run_after is not RunAfter.SUCCEEDED:
            raise InvalidJobError(
                "a step's parents are the step's own depends_on and run_after, not its "
                f"job's (field `{where}.job.depends_on`)"
            )
        steps: list[int] = []
        jobs: list[uuid.UUID] = []
        positions: list[int] = []
        seen: set[str] = set()
        for position, name in enumerate(step.depends_on):
            field = f"{where}.depends_on[{position}]"
            if name in seen:
                raise InvalidJobError(f"{name!r} is named twice (field `{field}`)")
            seen.add(name)
            if name in index_of:  # a step's name wins over a job id spelled the same
                steps.append(index_of[name])
                has_children[index_of[name]] = True
                continue
            try:
                parent = uuid.UUID(name)
            except ValueError:
                raise InvalidJobError(
                    f"no step is named {name!r}, and it is not a job id (field `{field}`)"
                ) from None
            if parent in jobs:
                raise InvalidJobError(f"job {parent} is named twice (field `{field}`)")
            jobs.append(parent)
            positions.append(position)
        if not steps and not jobs and step.run_after is not RunAfter.SUCCEEDED:
            raise InvalidJobError(f"run_after needs depends_on (field `{where}.run_after`)")
        parents.append((tuple(steps), tuple(jobs), tuple(positions)))
    cycle = find_cycle([p for p, _, _ in parents])
    if cycle:
        names = " -> ".join(spec.steps[i].name for i in [*cycle, cycle[0]])
        raise InvalidJobError(
            f"the steps depend on each other in a cycle: {names} (each waits for the one "
            "before it) (field `steps`)"
        )
    return [
        PlannedStep(
            index=index,
            spec=step,
            parent_steps=parents[index][0],
            parent_jobs=parents[index][1],
            job_positions=parents[index][2],
            has_children=has_children[index],
        )
        for index, step in enumerate(spec.steps)
    ]


def find_cycle(parents: list[tuple[int, ...]]) -> list[int]:
    """One cycle of the graph (node -> its parents) as its nodes in order, or [] if none.

    Iterative depth-first search: a workflow's chain may be as long as its step cap.
    """
    new, active, done = 0, 1, 2
    state = [new] * len(parents)
    for root in range(len(parents)):
        if state[root] != new:
            continue
        path: list[int] = [root]
        state[root] = active
        stack: list[int] = [0]  # the next parent to look at, per node on the path
        while path:
            node = path[-1]
            if stack[-1] < len(parents[node]):
                parent = parents[node][stack[-1]]
                stack[-1] += 1
                if state[parent] == active:
                    return path[path.index(parent) :][::-1]
                if state[parent] == new:
                    state[parent] = active
                    path.append(parent)
                    stack.append(0)
            else:
                state[node] = done
                path.pop()
                stack.pop()
    return []


class WorkflowStepCreated(msgspec.Struct, kw_only=True):
    """A step's job as created: `waiting` for its parents, or `queued` (a root)."""

    name: str
    job_id: uuid.UUID
    status: str


class WorkflowCreated(msgspec.Struct, kw_only=True):
    """The workflow created, with each step's job in the order given.

    `created` is false when an idempotency_key found the workflow an earlier request made;
    its steps then say their status now.
    """

    workflow_id: uuid.UUID
    name: str
    steps: list[WorkflowStepCreated]
    created: bool = True


class WorkflowStep(msgspec.Struct, kw_only=True):
    """One step as it is now."""

    name: str
    job_id: uuid.UUID
    status: str
    queue: str
    task: str
    # The steps it waits for by name; a job outside the workflow by its id.
    depends_on: list[str]
    run_after: str
    attempt: int
    max_attempts: int
    error: str | None
    # The parent whose end canceled it, when one did.
    canceled_by: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Workflow(msgspec.Struct, kw_only=True):
    """A workflow and every step's status.

    status: `active` while a step has not ended; then `succeeded` when all did, `failed`
    when one failed or was lost, else `canceled`.
    """

    workflow_id: uuid.UUID
    name: str
    status: str
    created_at: datetime
    canceled_at: datetime | None
    # Steps per status (only statuses some step has).
    counts: dict[str, int]
    steps: list[WorkflowStep]


class WorkflowSummary(msgspec.Struct, kw_only=True):
    """A workflow in a listing: its status and steps per status, without the steps."""

    workflow_id: uuid.UUID
    name: str
    status: str
    step_count: int
    created_at: datetime
    canceled_at: datetime | None
    counts: dict[str, int]


class WorkflowPage(msgspec.Struct, kw_only=True):
    """One page of the workflow listing, newest first; `next_cursor` is None on the last."""

    workflows: list[WorkflowSummary]
    next_cursor: str | None


def workflow_status(statuses: list[str]) -> str:
    """The workflow's status from its steps' (see Workflow)."""
    if any(status not in ("succeeded", "failed", "canceled", "lost") for status in statuses):
        return "active"
    if all(status == "succeeded" for status in statuses):
        return "succeeded"
    if any(status in ("failed", "lost") for status in statuses):
        return "failed"
    return "canceled"


class WorkflowCanceled(msgspec.Struct, kw_only=True):
    """What a workflow cancel did: steps canceled at once, running steps asked to stop."""

    workflow_id: uuid.UUID
    canceled: int
    cancel_requested: int
