"""Task names mapped to pipeline functions; `@pipeline("name")` registers one."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from app.pipelines.errors import InvalidArgsError
from app.settings import Settings

Pipeline = Callable[..., Any]
# Checks converted args against the settings (where they may send to); raises PermanentError.
DestinationCheck = Callable[[Any, Settings], Awaitable[None]]
F = TypeVar("F", bound=Pipeline)

BUILTIN_MODULES = (
    "app.pipelines.noop",
    "app.pipelines.http_callback",
    "app.pipelines.rabbitmq_publish",
    "app.pipelines.email_send",
)


ArgsCheck = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Registration:
    """A pipeline and, when it declares them, the msgspec Struct its args must match and a
    check for args a Struct cannot describe (free-form keys)."""

    func: Pipeline
    args_type: type[msgspec.Struct] | None = None
    check_destination: DestinationCheck | None = None
    check_args: ArgsCheck | None = None


@dataclass(frozen=True)
class DeclaredSchedule:
    """A schedule declared in code beside its pipeline; workers sync it into dl_schedules."""

    name: str
    cron: str
    task: str
    queue: str
    lock_key: str
    timezone: str = "UTC"
    args: dict[str, Any] = field(default_factory=dict)
    priority: int = 100
    max_attempts: int = 5
    lease_ttl_sec: int | None = None


_registry: dict[str, Registration] = {}
_schedules: dict[str, DeclaredSchedule] = {}


class DuplicatePipelineError(Exception):
    """Two pipelines were registered under one task name."""


def pipeline(
    name: str,
    *,
    args: type[msgspec.Struct] | None = None,
    check_args: ArgsCheck | None = None,
    check_destination: DestinationCheck | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as the pipeline for task `name`.

    With `args`, a trigger whose args do not convert to that Struct is rejected with a 400
    before the job exists, and the pipeline receives the converted Struct, not a dict.
    With `check_args`, a function that raises InvalidArgsError naming the field, the args
    dict is checked the same way (at trigger time and again before each run) and passed on
    as is: for free-form args a Struct cannot describe.
    With `check_destination`, a client's trigger is also refused (400) when the converted
    args name a destination the settings do not allow; the pipeline checks again itself.
    """

    def register(func: F) -> F:
        existing = _registry.get(name)
        if existing is not None and existing.func is not func:
            raise DuplicatePipelineError(
                f"task {name!r} is already registered to {existing.func!r}"
            )
        _registry[name] = Registration(
            func=func, args_type=args, check_args=check_args, check_destination=check_destination
        )
        return func

    return register


def declare_schedule(
    name: str,
    *,
    cron: str,
    task: str,
    queue: str,
    lock_key: str,
    timezone: str = "UTC",
    args: dict[str, Any] | None = None,
    priority: int = 100,
    max_attempts: int = 5,
    lease_ttl_sec: int | None = None,
) -> DeclaredSchedule:
    """Declare a schedule in code (next to its pipeline); every worker syncs it at start.

    The database keeps its row as for one made over HTTP (source 'code'); operators may
    disable it, and a later deploy that changes it keeps their choice.
    """
    declared = DeclaredSchedule(
        name=name,
        cron=cron,
        task=task,
        queue=queue,
        lock_key=lock_key,
        timezone=timezone,
        args=dict(args or {}),
        priority=priority,
        max_attempts=max_attempts,
        lease_ttl_sec=lease_ttl_sec,
    )
    existing = _schedules.get(name)
    if existing is not None and existing != declared:
        raise DuplicatePipelineError(f"schedule {name!r} is declared twice, differently")
    _schedules[name] = declared
    return declared


def declared_schedules() -> list[DeclaredSchedule]:
    """Every schedule declared in code, by name."""
    return [_schedules[name] for name in sorted(_schedules)]


def load_pipelines(modules: Iterable[str] = ()) -> None:
    """Import the built-ins and the configured modules so their decorators run."""
    for module in (*BUILTIN_MODULES, *modules):
        importlib.import_module(module)


def get_pipeline(name: str) -> Pipeline | None:
    """The pipeline registered for `name`, if any."""
    registration = _registry.get(name)
    return registration.func if registration is not None else None


def convert_args(name: str, args: dict[str, Any]) -> Any:
    """`args` as the pipeline of task `name` takes them: its args Struct, or the dict itself.

    Raises InvalidArgsError naming the offending field.
    """
    registration = _registry.get(name)
    if registration is None:
        return args
    if registration.check_args is not None:
        try:
            registration.check_args(args)
        except InvalidArgsError as exc:
            raise InvalidArgsError(f"invalid args for task {name!r}: {exc}") from None
    if registration.args_type is None:
        return args
    try:
        return msgspec.convert(args, registration.args_type)
    except msgspec.ValidationError as exc:
        raise InvalidArgsError(f"invalid args for task {name!r}: {exc}") from None


async def check_destination(name: str, args: dict[str, Any], settings: Settings) -> None:
    """Refuse `args` of task `name` when they name a destination `settings` do not allow.

    Raises InvalidArgsError (bad args) or a PermanentError saying what is refused and which
    setting allows it. May resolve host names, so it is async and runs on the caller's loop.
    """
    registration = _registry.get(name)
    if registration is None or registration.check_destination is None:
        return
    await registration.check_destination(convert_args(name, args), settings)


def is_registered(name: str) -> bool:
    """Whether a pipeline is registered for `name`."""
    return name in _registry


def registered_names() -> list[str]:
    """Every registered task name, sorted."""
    return sorted(_registry)


def args_schema(name: str) -> dict[str, Any] | None:
    """The JSON schema of task `name`'s args Struct; None without one (or when unknown)."""
    registration = _registry.get(name)
    if registration is None or registration.args_type is None:
        return None
    return msgspec.json.schema(registration.args_type)


def registered_tasks() -> dict[str, dict[str, Any] | None]:
    """Every registered task with the JSON schema of its args (None: any JSON object)."""
    return {name: args_schema(name) for name in sorted(_registry)}
