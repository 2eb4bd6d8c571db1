"""Task names mapped to pipeline functions; `@pipeline("name")` registers one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from app.pipelines.errors import InvalidArgsError

Pipeline = Callable[..., Any]
F = TypeVar("F", bound=Pipeline)

BUILTIN_MODULES = (
    "app.pipelines.noop",
    "app.pipelines.http_callback",
    "app.pipelines.rabbitmq_publish",
    "app.pipelines.email_send",
)


@dataclass(frozen=True)
class Registration:
    """A pipeline and, when it declares one, the msgspec Struct its args must match."""

    func: Pipeline
    args_type: type[msgspec.Struct] | None = None


_registry: dict[str, Registration] = {}


class DuplicatePipelineError(Exception):
    """Two pipelines were registered under one task name."""


def pipeline(name: str, *, args: type[msgspec.Struct] | None = None) -> Callable[[F], F]:
    """Register the decorated function as the pipeline for task `name`.

    With `args`, a trigger whose args do not convert to that Struct is rejected with a 400
    before the job exists, and the pipeline receives the converted Struct, not a dict.
    """

    def register(func: F) -> F:
        existing = _registry.get(name)
        if existing is not None and existing.func is not func:
            raise DuplicatePipelineError(
                f"task {name!r} is already registered to {existing.func!r}"
            )
        _registry[name] = Registration(func=func, args_type=args)
        return func

    return register


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
    if registration is None or registration.args_type is None:
        return args
    try:
        return msgspec.convert(args, registration.args_type)
    except msgspec.ValidationError as exc:
        raise InvalidArgsError(f"invalid args for task {name!r}: {exc}") from None


def is_registered(name: str) -> bool:
    """Whether a pipeline is registered for `name`."""
    return name in _registry


def registered_names() -> list[str]:
    """Every registered task name, sorted."""
    return sorted(_registry)
