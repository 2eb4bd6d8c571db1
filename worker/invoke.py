"""Call a pipeline whatever its shape: async generator, coroutine, or plain function."""

from __future__ import annotations

import asyncio
import inspect
from functools import cache
from typing import Any

from app.pipelines.context import PipelineContext
from app.pipelines.registry import Pipeline, convert_args
from app.pipelines.results import Result


class PipelineCanceled(Exception):
    """The pipeline stopped at a checkpoint because its job was canceled."""


@cache
def _takes_context(func: Pipeline) -> bool:
    # Cached: inspecting a signature costs more than running a short job.
    return len(inspect.signature(func).parameters) >= 2


def _call_args(func: Pipeline, args: Any, ctx: PipelineContext) -> tuple[Any, ...]:
    """(args, ctx) for pipelines that take a context, (args,) for those that do not."""
    return (args, ctx) if _takes_context(func) else (args,)


def is_interruptible(func: Pipeline) -> bool:
    """Plain functions run in a thread and cannot be stopped before they return."""
    return inspect.isasyncgenfunction(func) or inspect.iscoroutinefunction(func)


async def run_pipeline(func: Pipeline, args: dict[str, Any], ctx: PipelineContext) -> None:
    """Run to completion, leaving the job's result in `ctx.result`.

    Each async-generator yield is a checkpoint: a dict is its progress, a `Result` its
    result. A coroutine's or plain function's return value other than None is its result.
    A pipeline that declares an args Struct receives its args converted (InvalidArgsError,
    a PermanentError, when they no longer convert).
    """
    call = _call_args(func, convert_args(ctx.task, args), ctx)
    if inspect.isasyncgenfunction(func):
        async for item in func(*call):
            if isinstance(item, dict):
                ctx.report_progress(item)
            elif isinstance(item, Result):
                ctx.set_result(item.value)
            if ctx.cancelled:
                raise PipelineCanceled
        return
    if inspect.iscoroutinefunction(func):
        result = await func(*call)
    else:
        result = await asyncio.to_thread(func, *call)
    if result is not None:
        ctx.set_result(result)
