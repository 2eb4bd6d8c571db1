"""`noop` is bounded: too many steps or too long a sleep is a 400, and steps take no memory each."""

from __future__ import annotations

import tracemalloc
import uuid
from typing import Any

import pytest

from app.domain.errors import InvalidJobError
from app.jobs.validation import check_spec
from app.pipelines.context import PipelineContext
from app.pipelines.noop import MAX_STEPS, noop
from tests.support.specs import echo_spec


def rejected(args: dict[str, Any]) -> str:
    """The 400 message a noop trigger with these args gets."""
    with pytest.raises(InvalidJobError) as caught:
        check_spec(echo_spec(task="noop", args=args))
    return caught.value.message


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"steps": 1_000_000_000}, "`$.steps`"),
        ({"steps": MAX_STEPS + 1}, "`$.steps`"),
        ({"steps": -1}, "`$.steps`"),
        ({"steps": "3"}, "`$.steps`"),
        ({"steps": True}, "`$.steps`"),
        ({"steps": 1, "sleep": 3_601}, "`$.sleep`"),
        ({"steps": 1, "sleep": -0.5}, "`$.sleep`"),
        ({"steps": 1, "sleep": "1"}, "`$.sleep`"),
        ({"steps": 100, "sleep": 3_600}, "`$.sleep`"),  # 100 hours in all
        ({"sleep1": 1, "sleep2": 4_000}, "`$.sleep2`"),
        ({f"sleep{n}": 0 for n in range(MAX_STEPS + 1)}, "`sleepN`"),
        ({f"sleep{n}": 3_600 for n in range(25)}, "`sleepN`"),  # 25 hours in all
    ],
)
def test_noop_args_beyond_limits_rejected_naming_field(args: dict[str, Any], field: str) -> None:
    message = rejected(args)

    assert message.startswith("invalid args for task 'noop': "), message
    assert field in message, message


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"steps": 0},
        {"steps": 3},
        {"steps": MAX_STEPS, "sleep": 0},
        {"steps": 1, "sleep": 0.05, "fail_at_step": 0, "fail_attempts": 1},
        {"steps": 1, "fail": True},
        {"sleep1": 1, "sleep2": 3_600},
        {"sleep": 1.0},
        {"i": 3, "nested": {"list": [3, "3"]}},
    ],
)
def test_noop_args_within_limits_accepted(args: dict[str, Any]) -> None:
    assert check_spec(echo_spec(task="noop", args=args)).args == args


async def test_noop_steps_take_no_memory_each() -> None:
    """The largest allowed run starts without building anything per step (no list of steps)."""
    ctx = PipelineContext(job_id=uuid.uuid4(), attempt=1, task="noop", queue="etl.test")
    run = noop({"steps": MAX_STEPS, "sleep": 0}, ctx)
    tracemalloc.start()
    try:
        first = await anext(run)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await run.aclose()

    assert first == {"processed": 1, "total": MAX_STEPS}
    # A list of 10,000 steps alone takes 80 KB; one step's work takes a few hundred bytes.
    assert peak < 16_000, peak
