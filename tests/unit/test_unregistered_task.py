"""worker.unregistered_task: a job whose task no live worker has fails at once, else retries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.pipelines.errors import PermanentError
from worker.unregistered_task import (
    TaskNotRegisteredError,
    TaskNotRegisteredHereError,
    unregistered_task_error,
)


def holders_of(found: Mapping[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    async def lookup(task: str) -> Mapping[str, Sequence[str]]:
        return found

    return lookup


async def test_unregistered_task_error_is_permanent_when_no_live_worker_has_the_task() -> None:
    error = await unregistered_task_error(
        "x.task", "etl.a", "w1", ["noop", "http.callback"], holders_of({})
    )
    assert isinstance(error, TaskNotRegisteredError)
    assert isinstance(error, PermanentError)
    assert str(error) == (
        "task 'x.task' is not registered on worker w1 (registered: noop, http.callback),"
        " nor on any live worker serving queue 'etl.a'"
    )


async def test_unregistered_task_error_is_permanent_when_its_holders_serve_other_queues() -> None:
    error = await unregistered_task_error(
        "x.task", "etl.a", "w1", ["noop"], holders_of({"w2": ["etl.b"], "w1": ["etl.a"]})
    )
    assert isinstance(error, TaskNotRegisteredError)


async def test_unregistered_task_error_retries_when_a_live_peer_on_the_queue_has_it() -> None:
    error = await unregistered_task_error(
        "x.task", "etl.a", "w1", ["noop"], holders_of({"w3": ["etl.a"], "w2": ["etl.a", "x"]})
    )
    assert isinstance(error, TaskNotRegisteredHereError)
    assert not isinstance(error, PermanentError)
    assert str(error) == (
        "task 'x.task' is not registered on worker w1; live worker(s) serving queue 'etl.a'"
        " registered it: w2, w3: retried"
    )


async def test_unregistered_task_error_retries_when_the_registry_cannot_be_read() -> None:
    async def broken(task: str) -> Mapping[str, Sequence[str]]:
        raise OSError("database away")

    error = await unregistered_task_error("x.task", "etl.a", "w1", ["noop"], broken)
    assert isinstance(error, TaskNotRegisteredHereError)
