"""Built-in `noop`: sleeps a number of steps, for demos, tests and benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from app.pipelines.context import PipelineContext
from app.pipelines.registry import pipeline


class NoopFailure(Exception):
    """The noop pipeline was asked to fail."""


def _steps(args: dict[str, Any]) -> list[float]:
    """Sleep durations: `{"steps": N, "sleep": S}`, or every `sleepN` key in order."""
    if "steps" in args:
        return [float(args.get("sleep", 0))] * int(args["steps"])
    keyed = sorted(
        (int(key[5:]), float(value))
        for key, value in args.items()
        if key.startswith("sleep") and key[5:].isdigit()
    )
    return [seconds for _, seconds in keyed]


@pipeline("noop")
async def noop(args: dict[str, Any], ctx: PipelineContext) -> AsyncIterator[dict[str, Any]]:
    """Sleep each step, yielding progress; `fail_at_step` or `fail: true` raises on purpose."""
    steps = _steps(args)
    fail_at = args.get("fail_at_step", 0 if args.get("fail") else None)
    fail_attempts = args.get("fail_attempts")  # fail only while attempt <= this
    should_fail = fail_at is not None and (fail_attempts is None or ctx.attempt <= fail_attempts)
    total = len(steps)
    for index, seconds in enumerate(steps):
        if should_fail and index == fail_at:
            raise NoopFailure(f"noop failed on purpose at step {index}")
        await asyncio.sleep(seconds)
        yield {"processed": index + 1, "total": total}
    if should_fail and fail_at is not None and fail_at >= total:
        raise NoopFailure(f"noop failed on purpose after {total} steps")
