"""The suite's one way to wait: poll a condition until it holds or a timeout passes.

Tests never sleep a fixed time to wait for something; they poll with `wait_until`, which
fails with what it waited for, the last value seen and, when given, diagnostics (logs).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A polled condition did not come true in time."""


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` (sync or async) until it returns something truthy; return that.

    Raises WaitTimeout after `timeout` seconds, naming `what`, the last value seen and,
    when given, `diagnostics()` (for instance the worker logs). An exception raised by
    `predicate` ends the wait at once: a predicate fails early that way (a process died).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            extra = f"\n{diagnostics()}" if diagnostics is not None else ""
            raise WaitTimeout(
                f"timed out after {timeout}s waiting for {what}; last {value!r}{extra}"
            )
        await asyncio.sleep(interval)
