"""What a running pipeline is handed besides its args."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PipelineContext:
    """The job a pipeline runs for, a way to report progress and a result, and its
    cancellation."""

    job_id: uuid.UUID
    attempt: int
    task: str
    queue: str
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    progress_sink: Callable[[dict[str, Any]], None] | None = None
    # What the job returns (app.pipelines.results); None: no result.
    result: Any = None

    @property
    def cancelled(self) -> bool:
        """Whether the job was asked to stop; a pipeline may check it between steps."""
        return self.cancel_event.is_set()

    def report_progress(self, progress: dict[str, Any]) -> ProgressRecorded:
        """Record progress now; the worker saves it with the next heartbeat.

        Works called plainly or awaited: the progress is recorded before this returns, and the
        answer is an awaitable that is already done, so `await ctx.report_progress(...)` in a
        coroutine records it once too (and a plain function, in its thread, needs no loop).
        """
        if self.progress_sink is not None:
            self.progress_sink(progress)
        return RECORDED

    def set_result(self, value: Any) -> None:
        """Set the job's result (any JSON value); the last one set before the end wins.

        Stored with the final status when the attempt succeeds, and only then. For a
        coroutine or plain function, a return value other than None is set after it.
        """
        self.result = value


class ProgressRecorded:
    """What `report_progress` returns: awaiting it does nothing, as the work is done."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        # A generator that ends at once: `await` returns None without suspending.
        yield from ()


RECORDED = ProgressRecorded()
