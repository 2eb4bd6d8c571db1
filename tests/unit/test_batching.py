"""app.jobs.batching.RoundBatcher in memory: rounds, the cap, dropped callers, put-back, close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

import pytest

from app.jobs.batching import BatcherClosedError, Round, RoundBatcher
from tests.support.waiting import wait_until

WAIT_SEC = 5.0


@dataclass
class Writer:
    """A round writer that records each round and answers each request with its double.

    While `gate` is clear it holds the round it is writing, so that later submissions pile
    up; `entered` is set once it holds one.
    """

    rounds: list[list[int]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    fail_with: Exception | None = None

    def __post_init__(self) -> None:
        self.gate.set()

    async def __call__(self, batch: Round[int, int]) -> None:
        """Write one round."""
        self.rounds.append(batch.requests)
        self.entered.set()
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        batch.settle_all([request * 2 for request in batch.requests])


@pytest.fixture
async def writer() -> Writer:
    return Writer()


@pytest.fixture
async def batcher(writer: Writer) -> AsyncIterator[RoundBatcher[int, int]]:
    rounds: RoundBatcher[int, int] = RoundBatcher(writer, max_round=10, name="test-batcher")
    yield rounds
    await rounds.close()


async def hold_first_round(batcher: RoundBatcher[int, int], writer: Writer) -> asyncio.Task[int]:
    """Submit 0 and keep its round in the writer until `writer.gate` is set."""
    writer.gate.clear()
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.wait_for(writer.entered.wait(), WAIT_SEC)
    return first


async def submit_while_held(
    batcher: RoundBatcher[int, int], requests: list[int]
) -> list[asyncio.Task[int]]:
    """Submit each request from its own task; returns once all of them wait."""
    before = batcher.waiting
    tasks = [asyncio.create_task(batcher.submit(request)) for request in requests]
    await wait_until(
        lambda: batcher.waiting == before + len(requests), timeout=WAIT_SEC, what="submissions"
    )
    return tasks


async def test_batcher_writes_a_lone_request_at_once(
    batcher: RoundBatcher[int, int], writer: Writer
) -> None:
    assert await asyncio.wait_for(batcher.submit(21), WAIT_SEC) == 42
    assert writer.rounds == [[21]]


async def test_batcher_forms_a_round_from_what_arrived_during_a_write(
    batcher: RoundBatcher[int, int], writer: Writer
) -> None:
    first = await hold_first_round(batcher, writer)
    later = await submit_while_held(batcher, [1, 2, 3, 4, 5])

    writer.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *later), WAIT_SEC)

    assert answers == [0, 2, 4, 6, 8, 10]
    assert writer.rounds == [[0], [1, 2, 3, 4, 5]]  # one round for the five, in order


async def test_batcher_caps_a_round_and_serves_the_rest_next(
    batcher: RoundBatcher[int, int], writer: Writer
) -> None:
    first = await hold_first_round(batcher, writer)
    later = await submit_while_held(batcher, list(range(1, 26)))

    writer.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *later), WAIT_SEC)

    assert answers == [2 * i for i in range(26)]
    assert [len(r) for r in writer.rounds] == [1, 10, 10, 5]
    assert [i for r in writer.rounds for i in r] == list(range(26))


async def test_batcher_drops_requests_whose_caller_went_away(
    batcher: RoundBatcher[int, int], writer: Writer
) -> None:
    first = await hold_first_round(batcher, writer)
    later = await submit_while_held(batcher, list(range(1, 13)))
    for task in later[:3]:
        task.cancel()

    writer.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *later[3:]), WAIT_SEC)

    assert answers == [2 * i for i in [0, *range(4, 13)]]
    # The cap counts live requests only: the nine left fill one round.
    assert writer.rounds == [[0], list(range(4, 13))]
    assert all(task.cancelled() for task in later[:3])


async def test_batcher_keeps_abandoned_requests_when_told(writer: Writer) -> None:
    batcher: RoundBatcher[int, int] = RoundBatcher(writer, max_round=10, keep_abandoned=True)
    try:
        first = await hold_first_round(batcher, writer)
        later = await submit_while_held(batcher, [1, 2, 3])
        later[0].cancel()

        writer.gate.set()
        answers = await asyncio.wait_for(asyncio.gather(first, *later[1:]), WAIT_SEC)

        assert answers == [0, 4, 6]
        assert writer.rounds == [[0], [1, 2, 3]]  # the write of 1 still happens
    finally:
        await batcher.close()


async def test_batcher_fails_every_caller_of_a_round_whose_write_raised(
    batcher: RoundBatcher[int, int], writer: Writer
) -> None:
    first = await hold_first_round(batcher, writer)
    later = await submit_while_held(batcher, [1, 2])
    writer.fail_with = RuntimeError("database said no")

    writer.gate.set()
    outcomes = await asyncio.wait_for(
        asyncio.gather(first, *later, return_exceptions=True), WAIT_SEC
    )

    assert [str(o) for o in outcomes] == ["database said no"] * 3
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    # The serving task survived the failure.
    writer.fail_with = None
    assert await asyncio.wait_for(batcher.submit(7), WAIT_SEC) == 14


async def test_batcher_lets_the_writer_settle_each_request_its_own_way() -> None:
    async def odd_ones_fail(batch: Round[int, int]) -> None:
        for entry in batch:
            if entry.request % 2:
                entry.fail(ValueError(f"odd {entry.request}"))
            else:
                entry.settle(entry.request)

    batcher: RoundBatcher[int, int] = RoundBatcher(odd_ones_fail, max_round=10)
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True),
            WAIT_SEC,
        )
    finally:
        await batcher.close()

    assert [o if isinstance(o, int) else str(o) for o in outcomes] == [0, "odd 1", 2, "odd 3"]


async def test_batcher_put_back_retries_a_round_ahead_of_newer_requests() -> None:
    rounds: list[tuple[list[int], bool]] = []
    gate = asyncio.Event()
    batcher: RoundBatcher[int, int]

    async def fails_once(batch: Round[int, int]) -> None:
        rounds.append((batch.requests, batch.retried))
        if not batch.retried:
            await gate.wait()  # newer requests arrive while this round fails
            batcher.put_back(batch)
            return
        batch.settle_all(batch.requests)

    batcher = RoundBatcher(fails_once, max_round=10)
    try:
        first = asyncio.create_task(batcher.submit(1))
        await wait_until(lambda: rounds, timeout=WAIT_SEC, what="the first round")
        second = await submit_while_held(batcher, [2])
        gate.set()

        answers = await asyncio.wait_for(asyncio.gather(first, second[0]), WAIT_SEC)
        assert list(answers) == [1, 2]
    finally:
        await batcher.close()

    # 1 went back to the front; 2 joined it, so its round counts as retried.
    assert rounds == [([1], False), ([1, 2], True)]


async def test_batcher_put_back_and_then_a_raise_leaves_the_requests_waiting() -> None:
    calls = 0
    batcher: RoundBatcher[int, int]

    async def put_back_then_raise(batch: Round[int, int]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            batcher.put_back(batch)
            raise RuntimeError("after the put-back")
        batch.settle_all([entry.times_put_back for entry in batch])

    batcher = RoundBatcher(put_back_then_raise, max_round=10)
    try:
        answer = await asyncio.wait_for(batcher.submit(5), WAIT_SEC)
    finally:
        await batcher.close()

    assert calls == 2
    assert answer == 1  # answered by the retry, not failed by the raise


async def test_batcher_settles_later_when_the_writer_says_so() -> None:
    later: list[Callable[[], None]] = []

    async def settle_on_callback(batch: Round[int, int]) -> None:
        for entry in batch:
            later.append(partial(entry.settle, entry.request + 100))

    batcher: RoundBatcher[int, int] = RoundBatcher(
        settle_on_callback, max_round=10, keep_abandoned=True
    )
    try:
        caller = asyncio.create_task(batcher.submit(1))
        await wait_until(lambda: later, timeout=WAIT_SEC, what="the round")
        assert not caller.done()  # the round was written, but not yet settled

        later[0]()

        assert await asyncio.wait_for(caller, WAIT_SEC) == 101
    finally:
        await batcher.close()


async def test_batcher_wake_serves_a_round_without_requests() -> None:
    rounds: list[int] = []

    async def record(batch: Round[int, int]) -> None:
        rounds.append(len(batch))

    batcher: RoundBatcher[int, int] = RoundBatcher(record, max_round=10)
    try:
        batcher.wake()
        await wait_until(lambda: rounds, timeout=WAIT_SEC, what="an empty round")
    finally:
        await batcher.close()

    assert rounds == [0]


async def test_batcher_runs_idle_work_when_nothing_comes() -> None:
    idle = asyncio.Event()

    async def on_idle() -> None:
        idle.set()

    async def nothing(batch: Round[int, int]) -> None:
        batch.settle_all(batch.requests)

    batcher: RoundBatcher[int, int] = RoundBatcher(
        nothing, max_round=10, idle_sec=0.01, on_idle=on_idle
    )
    try:
        batcher.start()
        await asyncio.wait_for(idle.wait(), WAIT_SEC)
    finally:
        await batcher.close()


async def test_batcher_close_cancels_the_round_in_flight_and_the_waiting(
    batcher: RoundBatcher[int, int], writer: Writer
) -> None:
    first = await hold_first_round(batcher, writer)
    later = await submit_while_held(batcher, [1, 2])

    await batcher.close()

    outcomes = await asyncio.wait_for(
        asyncio.gather(first, *later, return_exceptions=True), WAIT_SEC
    )
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
    with pytest.raises(BatcherClosedError):
        await batcher.submit(3)
    batcher.wake()  # a late wake-up after close starts nothing
    assert writer.rounds == [[0]]


def test_batcher_refuses_a_round_of_nothing(writer: Writer) -> None:
    with pytest.raises(ValueError, match="max_round"):
        RoundBatcher(writer, max_round=0)
