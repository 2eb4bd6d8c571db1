"""What every maintenance service shares: its loop (a pass, then the wait it chose) and checks."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

T = TypeVar("T")

# Runs before each pass; the leader's proves that it still holds the lock, and raises if not.
Guard = Callable[[], Awaitable[None]]

# However soon a service asks for its next pass, the loop yields at least this long.
MIN_WAIT_SEC = 0.01


def is_dead_connection(error: BaseException) -> bool:
    """Whether `error` says the pooled connection was dead; the pool then replaces them all."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


async def again_if_connection_was_dead(action: Callable[[], Awaitable[T]]) -> T:
    """`action()`, and once more when a connection it took from the pool was dead.

    The maintenance pool lends its connections untested (an idle leader would spend most
    of its statements testing them); a dead one fails the action, and the pool has new
    ones for the second try.
    """
    try:
        return await action()
    except Exception as error:
        if not is_dead_connection(error):
            raise
    return await action()


def require_positive(config: object, **values: float) -> None:
    """Reject a value of a Config that is zero, negative or NaN, naming the Config and field."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{type(config).__name__}.{name} must be above zero, not {value!r}")


async def wait_unless_stopped(stopped: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less when `stopped` is set meanwhile; returns whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), max(seconds, 0.0))
    return stopped.is_set()


async def wait_for_either(stopped: asyncio.Event, woken: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less when `stopped` or `woken` is set; returns whether stopped."""
    if not woken.is_set():
        waiters = {asyncio.create_task(stopped.wait()), asyncio.create_task(woken.wait())}
        try:
            await asyncio.wait(
                waiters, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
    return stopped.is_set()


class MaintenanceService(ABC):
    """A service the leader starts when it wins the election and stops when it resigns.

    A service has a `run_once()` that returns what one pass did and logs only when the pass
    acted, and says in `pass_then_wait()` when its next pass is due. A pass that raises ends
    the loop, and so the leader's term, unless the service handles that error itself.
    """

    def first_wait_sec(self) -> float:
        """How long a new term waits before this service's first pass: none by default."""
        return 0.0

    @abstractmethod
    async def pass_then_wait(self) -> float:
        """One pass (`run_once()`); returns the seconds until the next one is due."""

    async def sleep(self, stopped: asyncio.Event, seconds: float) -> bool:
        """The wait between two passes; returns whether `stopped` is set. A service that can
        be woken early overrides it."""
        return await wait_unless_stopped(stopped, seconds)

    async def run(self, stopped: asyncio.Event, guard: Guard | None = None) -> None:
        """Pass after pass until `stopped` is set; `guard` runs before each pass."""
        wait = self.first_wait_sec()
        while not await self.sleep(stopped, wait):
            if guard is not None:
                await guard()
            # A second failure ends the loop.
            wait = max(await again_if_connection_was_dead(self.pass_then_wait), MIN_WAIT_SEC)
