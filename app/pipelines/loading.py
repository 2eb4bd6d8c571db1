"""Loading DL_PIPELINE_MODULES at start: a module that does not import is one line, exit 2."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable

from app.pipelines.registry import load_pipelines


class PipelineModuleError(Exception):
    """A module named in DL_PIPELINE_MODULES could not be imported."""


def load_configured_pipelines(modules: Iterable[str]) -> None:
    """The built-ins, then each configured module; the first that fails is named."""
    load_pipelines()
    for module in modules:
        try:
            load_pipelines((module,))
        except Exception as exc:  # anything its import raised: the module is unusable
            raise PipelineModuleError(_describe(module, exc)) from exc


def pipelines_or_exit(program: str, modules: Iterable[str]) -> None:
    """Load the pipelines, or print one line naming DL_PIPELINE_MODULES and the module, exit 2."""
    try:
        load_configured_pipelines(modules)
    except PipelineModuleError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _describe(module: str, exc: Exception) -> str:
    """Why `module` failed, on one line; a fault inside it also says where."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    text = f"DL_PIPELINE_MODULES names {module!r}, which cannot be imported: {reason}"
    if (
        isinstance(exc, ModuleNotFoundError)
        and exc.name is not None
        and module.startswith(exc.name)
    ):
        return text  # the module (or its package) is not there: no place inside it to show
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        text += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return text
