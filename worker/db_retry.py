"""Worker writes that must outlive a database outage: sent again until the database answers.

A PostgreSQL restart or failover takes seconds. An attempt whose pipeline finished
meanwhile would otherwise lose its final write, stay `running` until its lease expired,
and run a second time. Sending the write again is safe: every write is fenced by the
attempt number, so one that already landed, or that another attempt overtook, changes
nothing the second time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.jobs.availability import database_unreachable

T = TypeVar("T")

logger = logging.getLogger("worker.db_retry")

FIRST_DELAY_SEC = 0.2
MAX_DELAY_SEC = 5.0


async def retry_while_unreachable(operation: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run `operation` until it succeeds or fails for a reason other than reachability."""
    delay = FIRST_DELAY_SEC
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            logger.warning(
                "%s: database unreachable (%s: %s); trying again in %.1fs",
                what,
                type(exc).__name__,
                exc,
                delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_SEC)
