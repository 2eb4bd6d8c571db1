"""app.domain.workflows.plan: a workflow's DAG checked in memory, each mistake named."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from app.domain.errors import InvalidJobError
from app.domain.workflows import MAX_WORKFLOW_STEPS, WorkflowCreate, find_cycle, plan


def workflow(*steps: dict[str, Any]) -> WorkflowCreate:
    return msgspec.convert({"name": "nightly", "steps": list(steps)}, WorkflowCreate)


def step(name: str, *parents: str, **extra: Any) -> dict[str, Any]:
    job = {"queue": "etl.default", "task": "noop", "lock_key": name, **extra.pop("job", {})}
    return {"name": name, "job": job, "depends_on": list(parents), **extra}


def refused(spec: WorkflowCreate) -> str:
    with pytest.raises(InvalidJobError) as error:
        plan(spec)
    return error.value.message


def test_plan_diamond_resolves_parents_by_name_and_marks_steps_with_children() -> None:
    steps = plan(workflow(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")))

    assert [s.parent_steps for s in steps] == [(), (0,), (0,), (1, 2)]
    assert [s.has_children for s in steps] == [True, True, True, False]


def test_plan_a_job_id_outside_the_workflow_is_a_parent_job_with_its_position() -> None:
    outside = uuid.uuid4()
    [first, second] = plan(workflow(step("a"), step("b", "a", str(outside))))

    assert (second.parent_steps, second.parent_jobs, second.job_positions) == (
        (0,),
        (outside,),
        (1,),
    )
    assert first.has_children


def test_plan_a_step_name_wins_over_a_job_id_spelled_the_same() -> None:
    name = str(uuid.uuid4())
    [_, child] = plan(workflow(step(name), step("b", name)))

    assert (child.parent_steps, child.parent_jobs) == ((0,), ())


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [step("a", "c"), step("b", "a"), step("c", "b")],
            "the steps depend on each other in a cycle: b -> c -> a -> b (each waits for the"
            " one before it) (field `steps`)",
        ),
        ([step("a", "a")], "cycle: a -> a "),
        ([step("a", "nope")], "no step is named 'nope', and it is not a job id"),
        ([step("a"), step("a")], "step name 'a' is taken by steps[0] (field `steps[1].name`)"),
        ([step("a"), step("b", "a", "a")], "'a' is named twice (field `steps[1].depends_on[1]`)"),
        ([step("a", run_after="any")], "run_after needs depends_on (field `steps[0].run_after`)"),
        (
            [step("a", job={"idempotency_key": "k"})],
            "cannot set idempotency_key (field `steps[0].job.idempotency_key`)",
        ),
        ([step("a", job={"coalescing": True})], "(field `steps[0].job.coalescing`)"),
        (
            [step("a"), step("b", job={"depends_on": [str(uuid.uuid4())]})],
            "(field `steps[1].job.depends_on`)",
        ),
    ],
)
def test_plan_refuses_a_bad_workflow_naming_what_is_wrong(
    steps: list[dict[str, Any]], message: str
) -> None:
    assert message in refused(workflow(*steps))


def test_plan_refuses_the_same_job_id_twice_in_two_spellings() -> None:
    outside = uuid.uuid4()

    assert "is named twice" in refused(workflow(step("a", str(outside), str(outside).upper())))


def test_plan_a_chain_as_long_as_the_cap_needs_no_recursion() -> None:
    steps = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, MAX_WORKFLOW_STEPS)]

    planned = plan(workflow(*steps))

    assert planned[-1].parent_steps == (MAX_WORKFLOW_STEPS - 2,)
    assert find_cycle([(i - 1,) if i else (MAX_WORKFLOW_STEPS - 1,) for i in range(10_000)])
