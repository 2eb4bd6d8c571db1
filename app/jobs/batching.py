"""Round batching: requests that arrive while one round is written share the next round.

Callers `await submit(request)`; one serving task hands the waiting requests, a round at a
time, to the owner's `write_round`, which answers each through its `Waiting` entry. A lone
request is written at once; a round forms only from what arrived during the previous write,
so batching costs no added latency and grows with load. The trigger batcher, the worker's
lock session and its finish writer are built on it.

What differs between owners is theirs to decide, through small hooks:
- `max_round`: how many requests one round takes; the rest wait for the next one.
- `keep_abandoned`: whether a request whose caller went away is still written (a finish
  must be, the pipeline ran) or dropped from the round (a trigger need not be).
- settling: `write_round` settles each entry when it decides to (at once, or later from a
  callback); an exception that escapes it fails the round's unsettled entries.
- `put_back(round)`: the round goes back to the front of the queue, to be retried by the
  next round (the owner decides when and how often, e.g. after a delay).
- `wake()` serves a round even with no request waiting, for work the owner keeps itself;
  `idle_sec`/`on_idle` run the owner's idle work on the serving task when nothing came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger("app.jobs.batching")

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class BatcherClosedError(RuntimeError):
    """The batcher was closed: it takes no more requests."""


@dataclass(eq=False)
class Waiting(Generic[Request, Answer]):
    """A submitted request and the future its caller awaits."""

    request: Request
    future: asyncio.Future[Answer]
    # How many failed rounds put it back (an owner may retry only once).
    times_put_back: int = 0

    @property
    def abandoned(self) -> bool:
        """Its caller went away (or it was already answered): nobody awaits an answer."""
        return self.future.done()

    def settle(self, answer: Answer) -> None:
        """Answer the caller, unless it went away."""
        if not self.future.done():
            self.future.set_result(answer)

    def fail(self, error: BaseException) -> None:
        """Fail the caller with `error`, unless it went away."""
        if not self.future.done():
            self.future.set_exception(error)


@dataclass
class Round(Generic[Request, Answer]):
    """The requests one round writes, in the order they were submitted."""

    entries: list[Waiting[Request, Answer]]
    # Set by RoundBatcher.put_back: its entries wait in the queue again, not in this round.
    was_put_back: bool = False

    @property
    def requests(self) -> list[Request]:
        """The requests alone, for the write."""
        return [entry.request for entry in self.entries]

    @property
    def retried(self) -> bool:
        """Whether an earlier round put any of these requests back."""
        return any(entry.times_put_back for entry in self.entries)

    def settle_all(self, answers: Sequence[Answer]) -> None:
        """Answer each caller with the answer at its position."""
        for entry, answer in zip(self.entries, answers, strict=True):
            entry.settle(answer)

    def fail_all(self, error: BaseException) -> None:
        """Fail every caller still waiting with `error`."""
        for entry in self.entries:
            entry.fail(error)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Waiting[Request, Answer]]:
        return iter(self.entries)


WriteRound = Callable[[Round[Request, Answer]], Awaitable[None]]


@dataclass
class RoundBatcher(Generic[Request, Answer]):
    """Collects submissions and hands them, one round at a time, to `write_round`."""

    write_round: WriteRound[Request, Answer]
    max_round: int
    name: str = "round-batcher"
    keep_abandoned: bool = False
    # With no wake-up for idle_sec, on_idle runs on the serving task (e.g. a keep-alive
    # ping on the connection the rounds use: never two statements on it at once).
    idle_sec: float | None = None
    on_idle: Callable[[], Awaitable[None]] | None = None
    _waiting: list[Waiting[Request, Answer]] = field(default_factory=list)
    _current: Round[Request, Answer] | None = None
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _closed: bool = False

    def __post_init__(self) -> None:
        if self.max_round < 1:
            raise ValueError(f"{self.name}: max_round must be at least 1, not {self.max_round}")

    async def submit(self, request: Request) -> Answer:
        """Queue `request` for the next round; its answer once `write_round` settles it."""
        if self._closed:
            raise BatcherClosedError(f"{self.name} is closed")
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append(Waiting(request, future))
        self.wake()
        return await future

    def start(self) -> None:
        """Start the serving task now (submit() starts it too, on first use)."""
        if self._closed:
            raise BatcherClosedError(f"{self.name} is closed")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve(), name=self.name)

    def wake(self) -> None:
        """Serve a round soon, even if no request waits (the owner has work of its own)."""
        if self._closed:
            return
        self.start()
        self._wakeup.set()

    def put_back(self, batch: Round[Request, Answer]) -> None:
        """Queue a failed round again, ahead of newer requests, for the next round."""
        for entry in batch:
            entry.times_put_back += 1
        batch.was_put_back = True
        self._waiting[:0] = batch.entries
        self.wake()

    @property
    def waiting(self) -> int:
        """Requests not yet handed to a round."""
        return len(self._waiting)

    async def close(self) -> None:
        """Stop serving; the callers of requests not yet answered get CancelledError."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A round cut short by the cancel is unanswered too (cancelling twice is harmless).
        unanswered = [*(self._current or []), *self._waiting]
        self._current = None
        self._waiting.clear()
        for entry in unanswered:
            entry.future.cancel()

    def _take_round(self) -> Round[Request, Answer]:
        """At most max_round requests from the front; abandoned ones dropped unless kept."""
        taken: list[Waiting[Request, Answer]] = []
        index = 0
        while index < len(self._waiting) and len(taken) < self.max_round:
            entry = self._waiting[index]
            index += 1
            if self.keep_abandoned or not entry.abandoned:
                taken.append(entry)
        del self._waiting[:index]
        return Round(taken)

    async def _wait(self) -> bool:
        """Until woken (True), or idle for idle_sec (False)."""
        if self.idle_sec is None:
            await self._wakeup.wait()
            return True
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout=self.idle_sec)
        except TimeoutError:
            return False
        return True

    async def _serve(self) -> None:
        while True:
            if not await self._wait():
                if self.on_idle is not None:
                    await self._guarded(self.on_idle(), None)
                continue
            self._wakeup.clear()
            self._current = self._take_round()
            if self._waiting:
                self._wakeup.set()  # past the cap: the next round comes right after
            await self._guarded(self.write_round(self._current), self._current)
            self._current = None

    async def _guarded(self, work: Awaitable[None], batch: Round[Request, Answer] | None) -> None:
        """Run the owner's work; a failure it let through fails the round, not the task."""
        try:
            await work
        except Exception as error:
            logger.exception(
                "%s: the owner's work failed; its round (if any) gets the error", self.name
            )
            if batch is not None and not batch.was_put_back:
                batch.fail_all(error)
