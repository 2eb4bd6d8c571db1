"""PipelineContext.report_progress: one recording whether the pipeline awaits it or not."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

from app.pipelines.context import PipelineContext


def context_with_sink() -> tuple[PipelineContext, list[dict[str, Any]]]:
    recorded: list[dict[str, Any]] = []
    ctx = PipelineContext(job_id=uuid.uuid4(), attempt=1, task="t", queue="q")
    ctx.progress_sink = recorded.append
    return ctx, recorded


def test_report_progress_plain_call_records_once() -> None:
    ctx, recorded = context_with_sink()

    ctx.report_progress({"processed": 1})

    assert recorded == [{"processed": 1}]


def test_report_progress_awaited_records_once() -> None:
    ctx, recorded = context_with_sink()

    async def pipeline() -> None:
        await ctx.report_progress({"processed": 2})
        await ctx.report_progress({"processed": 3})

    asyncio.run(pipeline())

    assert recorded == [{"processed": 2}, {"processed": 3}]


def test_report_progress_from_a_thread_without_a_loop_records_once() -> None:
    ctx, recorded = context_with_sink()

    worker = threading.Thread(target=ctx.report_progress, args=({"processed": 4},))
    worker.start()
    worker.join()

    assert recorded == [{"processed": 4}]
