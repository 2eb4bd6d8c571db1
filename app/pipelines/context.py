"""What a running pipeline is handed besides its args."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Generator
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
    # Reads the results of the jobs this one depends on (the worker gives it one).
    parent_results_reader: Callable[[], Awaitable[dict[str, Any]]] | None = None
    # The worker's event loop, for parent_results_blocking() from a plain function's thread.
    loop: asyncio.AbstractEventLoop | None = None
    _parents: dict[str, Any] | None = None

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

    async def parent_results(self) -> dict[str, Any]:
        """What the jobs this one depends on returned: {step name or job id: result}.

        A parent that is a step of this job's workflow is named by its step name, any other
        by its job id (as text). A parent that did not succeed (run_after `any`) has None,
        as has one that succeeded without a result. A job without parents gets {}. Read
        once per attempt (the parents have ended: their results no longer change).
        """
        if self._parents is None:
            reader = self.parent_results_reader
            self._parents = {} if reader is None else dict(await reader())
        return dict(self._parents)

    def parent_results_blocking(self) -> dict[str, Any]:
        """parent_results() for a plain function, which runs in a thread of its own."""
        if self.loop is None:
            raise RuntimeError("no event loop to read the parents' results on")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("on the event loop, use `await ctx.parent_results()`")
        return asyncio.run_coroutine_threadsafe(self.parent_results(), self.loop).result()

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
