"""Task names mapped to pipeline functions; `@pipeline("name")` registers one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

Pipeline = Callable[..., Any]
F = TypeVar("F", bound=Pipeline)

BUILTIN_MODULES = ("app.pipelines.noop",)

_registry: dict[str, Pipeline] = {}


class DuplicatePipelineError(Exception):
    """Two pipelines were registered under one task name."""


def pipeline(name: str) -> Callable[[F], F]:
    """Register the decorated function as the pipeline for task `name`."""

    def register(func: F) -> F:
        existing = _registry.get(name)
        if existing is not None and existing is not func:
            raise DuplicatePipelineError(f"task {name!r} is already registered to {existing!r}")
        _registry[name] = func
        return func

    return register


def load_pipelines(modules: Iterable[str] = ()) -> None:
    """Import the built-ins and the configured modules so their decorators run."""
    for module in (*BUILTIN_MODULES, *modules):
        importlib.import_module(module)


def get_pipeline(name: str) -> Pipeline | None:
    """The pipeline registered for `name`, if any."""
    return _registry.get(name)


def is_registered(name: str) -> bool:
    """Whether a pipeline is registered for `name`."""
    return name in _registry


def registered_names() -> list[str]:
    """Every registered task name, sorted."""
    return sorted(_registry)
