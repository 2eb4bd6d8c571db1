"""Built-in `noop`: sleeps a number of steps, for demos, tests and benchmarks.

Its args are free-form (tests tag jobs with keys of their own), so they are checked by a
hook rather than a Struct: the step count, each sleep and the total are bounded, because
`noop` is registered in production and any write token may trigger it. The steps are
produced lazily: memory stays the same whatever the count.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

from app.pipelines.context import PipelineContext
from app.pipelines.errors import InvalidArgsError
from app.pipelines.registry import pipeline
from app.pipelines.results import Result

# Enough for any demo or benchmark job; a worker slot is not held for longer than a day.
MAX_STEPS = 10_000
MAX_STEP_SLEEP_SEC = 3_600
MAX_TOTAL_SLEEP_SEC = 86_400


class NoopFailure(Exception):
    """The noop pipeline was asked to fail."""


def _sleep_keys(args: dict[str, Any]) -> list[tuple[int, str]]:
    """The `sleepN` keys (N a number) with their N, in step order."""
    return sorted(
        (int(key[5:]), key) for key in args if key.startswith("sleep") and key[5:].isdigit()
    )


def _seconds(args: dict[str, Any], key: str) -> float:
    """One sleep: a number from 0 to MAX_STEP_SLEEP_SEC, else InvalidArgsError naming it."""
    value = args[key]
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or not math.isfinite(value) or not 0 <= value <= MAX_STEP_SLEEP_SEC:
        raise InvalidArgsError(
            f"Expected a number of seconds from 0 to {MAX_STEP_SLEEP_SEC} - at `$.{key}`"
        )
    return float(value)


def check_noop_args(args: dict[str, Any]) -> None:
    """Refuse args that would run too many steps, sleep too long, or hold a slot too long."""
    if "steps" in args:
        steps = args["steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= MAX_STEPS:
            raise InvalidArgsError(f"Expected a whole number from 0 to {MAX_STEPS} - at `$.steps`")
        sleep = _seconds(args, "sleep") if "sleep" in args else 0.0
        if steps * sleep > MAX_TOTAL_SLEEP_SEC:
            raise InvalidArgsError(
                f"steps x sleep must be at most {MAX_TOTAL_SLEEP_SEC} seconds - at `$.sleep`"
            )
        return
    keys = _sleep_keys(args)
    if len(keys) > MAX_STEPS:
        raise InvalidArgsError(f"Expected at most {MAX_STEPS} `sleepN` keys - at `$`")
    if sum(_seconds(args, key) for _, key in keys) > MAX_TOTAL_SLEEP_SEC:
        raise InvalidArgsError(
            f"the `sleepN` keys must sleep at most {MAX_TOTAL_SLEEP_SEC} seconds in all - at `$`"
        )


def _steps(args: dict[str, Any]) -> tuple[int, Iterator[float]]:
    """How many steps, and their sleeps produced one at a time (never a list of steps).

    `{"steps": N, "sleep": S}`, or every `sleepN` key in order. The args are checked first.
    """
    if "steps" in args:
        count = int(args["steps"])
        return count, itertools.repeat(float(args.get("sleep", 0)), count)
    keys = _sleep_keys(args)  # at most MAX_STEPS, and already in the args themselves
    return len(keys), (float(args[key]) for _, key in keys)


@pipeline("noop", check_args=check_noop_args)
async def noop(
    args: dict[str, Any], ctx: PipelineContext
) -> AsyncIterator[dict[str, Any] | Result]:
    """Sleep each step, yielding progress; `fail_at_step` or `fail: true` raises on purpose;
    `result` (any JSON) becomes the job's result; `parent_results: true` makes it
    {"parents": what the jobs it depends on returned, "result": `result`}."""
    total, sleeps = _steps(args)
    fail_at = args.get("fail_at_step", 0 if args.get("fail") else None)
    fail_attempts = args.get("fail_attempts")  # fail only while attempt <= this
    should_fail = fail_at is not None and (fail_attempts is None or ctx.attempt <= fail_attempts)
    for index, seconds in enumerate(sleeps):
        if should_fail and index == fail_at:
            raise NoopFailure(f"noop failed on purpose at step {index}")
        await asyncio.sleep(seconds)
        yield {"processed": index + 1, "total": total}
    if should_fail and fail_at is not None and fail_at >= total:
        raise NoopFailure(f"noop failed on purpose after {total} steps")
    if args.get("parent_results") is True:  # for demos of workflows: results handed on
        yield Result({"parents": await ctx.parent_results(), "result": args.get("result")})
    elif "result" in args:  # for demos of results: what a real pipeline would return
        yield Result(args["result"])
