"""Checks against the pipeline registry: a job spec or a schedule is valid and its task exists."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence, Set

import msgspec

from app.domain.cron import CronRule, parse_cron
from app.domain.errors import InvalidJobError, InvalidScheduleError, UnknownTaskError
from app.domain.idempotency import check_client_names
from app.domain.schedules import ScheduleCreate, job_spec_of
from app.domain.spec import JobCreate, validated
from app.domain.workflows import PlannedStep, WorkflowCreate, plan
from app.pipelines.errors import InvalidArgsError, PermanentError
from app.pipelines.registry import (
    check_destination,
    convert_args,
    is_registered,
    registered_names,
)
from app.settings import Settings


def check_spec(
    spec: JobCreate,
    where: str = "",
    *,
    internal: bool = False,
    live_tasks: Set[str] | None = None,
) -> JobCreate:
    """The validated spec, or InvalidJobError prefixed by `where` (the item of a bulk call).

    Only `internal` specs (the service's own, e.g. a schedule's) may use the reserved
    namespace in idempotency_key and producer (app.domain.idempotency).
    With `live_tasks` (a process that loaded no pipelines: the tasks live workers
    registered), the task must be one of them; its args are then checked by the worker.
    """
    try:
        spec = validated(spec)
        if not internal:
            check_client_names(spec)
    except InvalidJobError as error:
        raise type(error)(where + error.message) from None
    if live_tasks is not None and not is_registered(spec.task):
        if spec.task in live_tasks:
            return spec
        known = ", ".join(sorted(live_tasks))
        raise UnknownTaskError(
            f"{where}unknown task {spec.task!r} (registered by live workers: {known}; this"
            " process loaded no pipelines)"
        )
    if not is_registered(spec.task):
        known = ", ".join(registered_names())
        raise UnknownTaskError(f"{where}unknown task {spec.task!r} (registered: {known})")
    try:
        convert_args(spec.task, spec.args)
    except InvalidArgsError as error:
        raise InvalidJobError(f"{where}{error}") from None
    return spec


async def check_destinations(
    specs: Sequence[JobCreate],
    settings: Settings,
    *,
    bulk: bool = False,
    items: str = "jobs",
    where: str = "",
) -> None:
    """Refuse a client's checked specs that name a destination the settings do not allow.

    Raises InvalidJobError (a 400) with the pipeline's reason and the setting that would
    allow it, naming the item (`jobs[i]`, or `steps[i].job` with items="steps") of a bulk
    call, or prefixed by `where`. The worker checks again.
    """
    for index, spec in enumerate(specs):
        try:
            await check_destination(spec.task, spec.args, settings)
        except PermanentError as error:  # InvalidArgsError too: also a PermanentError
            where = f"{items}[{index}]{'.job' if items == 'steps' else ''}: " if bulk else where
            raise InvalidJobError(f"{where}args of task {spec.task!r}: {error}") from None


def check_specs(
    specs: Sequence[JobCreate], *, internal: bool = False, live_tasks: Set[str] | None = None
) -> list[JobCreate]:
    """check_spec() for each item of a bulk call, naming the item (`jobs[i]`) in any error."""
    return [
        check_spec(spec, f"jobs[{index}]: ", internal=internal, live_tasks=live_tasks)
        for index, spec in enumerate(specs)
    ]


def check_workflow(
    spec: WorkflowCreate, *, live_tasks: Set[str] | None = None
) -> list[PlannedStep]:
    """The workflow's steps planned (app.domain.workflows.plan) with each job checked as
    check_spec() checks a trigger's; InvalidJobError naming the step (`steps[i]`) otherwise.

    Re-checks `spec` against its constraints first: in-app callers build it by hand.
    """
    try:
        spec = msgspec.convert(msgspec.to_builtins(spec), WorkflowCreate)
    except msgspec.ValidationError as exc:
        raise InvalidJobError(str(exc)) from None
    return [
        dataclasses.replace(
            step,
            spec=msgspec.structs.replace(
                step.spec,
                job=check_spec(step.spec.job, f"steps[{step.index}].job: ", live_tasks=live_tasks),
            ),
        )
        for step in plan(spec)
    ]


def check_schedule(spec: ScheduleCreate) -> CronRule:
    """Re-check `spec` (in-app callers build it by hand): its cron, zone and job template.

    Raises InvalidScheduleError (a 400) saying what is wrong.
    """
    try:
        msgspec.convert(msgspec.to_builtins(spec), ScheduleCreate)
    except msgspec.ValidationError as exc:
        raise InvalidScheduleError(str(exc)) from None
    rule = parse_cron(spec.cron, spec.timezone)
    # Internal: the template's producer is the schedule's, in the reserved namespace.
    check_spec(job_spec_of(spec), "job template: ", internal=True)  # InvalidJobError: a 400
    return rule
