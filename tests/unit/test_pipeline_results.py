"""A pipeline's result: which value each shape reports, and the check before it is stored."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.pipelines.context import PipelineContext
from app.pipelines.errors import PermanentError
from app.pipelines.results import (
    Result,
    ResultNotJsonError,
    ResultTooLargeError,
    encode_result,
)
from worker.invoke import run_pipeline

LIMIT = 1024


def context() -> PipelineContext:
    return PipelineContext(job_id=uuid.uuid4(), attempt=1, task="unit.results", queue="q")


async def test_run_pipeline_coroutine_return_value_is_the_result() -> None:
    async def pipeline(args: dict[str, Any], ctx: PipelineContext) -> dict[str, Any]:
        return {"rows": args["rows"]}

    ctx = context()
    await run_pipeline(pipeline, {"rows": 3}, ctx)

    assert ctx.result == {"rows": 3}
    assert encode_result(ctx.result, LIMIT) == '{"rows":3}'


async def test_run_pipeline_plain_function_return_value_is_the_result() -> None:
    def pipeline(args: dict[str, Any]) -> list[int]:
        return [1, 2, args["n"]]

    ctx = context()
    await run_pipeline(pipeline, {"n": 3}, ctx)

    assert ctx.result == [1, 2, 3]


async def test_run_pipeline_returned_dict_is_not_progress() -> None:
    recorded: list[dict[str, Any]] = []

    async def pipeline(args: dict[str, Any], ctx: PipelineContext) -> dict[str, Any]:
        return {"processed": 1}

    ctx = context()
    ctx.progress_sink = recorded.append
    await run_pipeline(pipeline, {}, ctx)

    assert recorded == []
    assert ctx.result == {"processed": 1}


async def test_run_pipeline_async_generator_last_result_set_wins() -> None:
    recorded: list[dict[str, Any]] = []

    async def pipeline(args: dict[str, Any], ctx: PipelineContext) -> AsyncIterator[Any]:
        ctx.set_result("first")
        yield {"processed": 1, "total": 2}
        yield Result({"second": True})
        yield {"processed": 2, "total": 2}
        yield Result({"third": True})

    ctx = context()
    ctx.progress_sink = recorded.append
    await run_pipeline(pipeline, {}, ctx)

    assert ctx.result == {"third": True}
    assert recorded == [{"processed": 1, "total": 2}, {"processed": 2, "total": 2}]


async def test_run_pipeline_coroutine_returning_none_keeps_the_result_it_set() -> None:
    async def pipeline(args: dict[str, Any], ctx: PipelineContext) -> None:
        ctx.set_result({"set": "by ctx"})

    ctx = context()
    await run_pipeline(pipeline, {}, ctx)

    assert ctx.result == {"set": "by ctx"}


async def test_run_pipeline_return_value_wins_over_a_result_set_before() -> None:
    async def pipeline(args: dict[str, Any], ctx: PipelineContext) -> str:
        ctx.set_result("earlier")
        return "returned"

    ctx = context()
    await run_pipeline(pipeline, {}, ctx)

    assert ctx.result == "returned"


def test_encode_result_none_is_no_result() -> None:
    assert encode_result(None, LIMIT) is None


def test_encode_result_converts_what_msgspec_knows() -> None:
    @dataclasses.dataclass
    class Summary:
        rows: int
        at: datetime

    text = encode_result(Summary(7, datetime(2026, 12, 1, tzinfo=UTC)), LIMIT)

    assert text is not None
    assert json.loads(text) == {"rows": 7, "at": "2026-12-01T00:00:00Z"}


def test_encode_result_at_the_limit_passes_one_byte_more_fails_naming_the_limit() -> None:
    fits = "x" * (LIMIT - 2)  # the quotes make it LIMIT bytes of JSON
    assert encode_result(fits, LIMIT) == json.dumps(fits)

    with pytest.raises(ResultTooLargeError) as raised:
        encode_result(fits + "x", LIMIT)

    message = str(raised.value)
    assert "DL_RESULT_MAX_BYTES (1,024 bytes)" in message
    assert "1,025 bytes" in message


def test_encode_result_counts_bytes_not_characters() -> None:
    with pytest.raises(ResultTooLargeError):
        encode_result("é" * (LIMIT // 2), LIMIT)  # 2 bytes each in UTF-8


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"rows": 1, "item": Opaque()}, f"'{__name__}.Opaque'"),
        ([1, object()], "'object'"),
        ({(1, 2): "tuple key"}, "'tuple'"),
    ],
)
def test_encode_result_not_json_names_the_type(value: Any, named: str) -> None:
    with pytest.raises(ResultNotJsonError) as raised:
        encode_result(value, LIMIT)

    assert f"not JSON-serialisable: it holds a value of type {named}" in str(raised.value)
    assert isinstance(raised.value, PermanentError)  # no retry: a rerun returns the same


def test_encode_result_refuses_nul_that_jsonb_cannot_hold() -> None:
    with pytest.raises(ResultNotJsonError) as raised:
        encode_result({"text": "a\x00b"}, LIMIT)

    assert "NUL character" in str(raised.value)


def test_encode_result_keeps_an_escaped_backslash_before_u0000() -> None:
    value = {"path": "C:\\u0000", "odd": "\\\\u0000"}

    text = encode_result(value, LIMIT)

    assert text is not None
    assert json.loads(text) == value


def test_encode_result_refuses_a_lone_surrogate() -> None:
    with pytest.raises(ResultNotJsonError) as raised:
        encode_result("\ud800", LIMIT)

    assert "surrogate" in str(raised.value)


def test_encode_result_refuses_nesting_past_the_recursion_limit() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]

    with pytest.raises(ResultNotJsonError) as raised:
        encode_result(deep, 10**9)

    assert "nested too deeply" in str(raised.value)
