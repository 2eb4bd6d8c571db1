"""Pipelines that only the end-to-end tests register, in the test process and in the workers.

Workers import this module through DL_PIPELINE_MODULES="tests.support.e2e_pipelines"
(their working directory is the repository root).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from app.pipelines.context import PipelineContext
from app.pipelines.registry import pipeline

# The table `test.record` writes to; tests create it with RUN_LOG_DDL before enqueueing.
RUN_LOG_DDL = """
CREATE TABLE e2e_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    worker_id text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz
)
"""


@pipeline("test.crash")
async def crash(args: dict[str, Any], ctx: PipelineContext) -> None:
    """Kill the worker process that runs it, as a segfault or an OOM kill would."""
    await asyncio.sleep(float(args.get("sleep", 0)))
    os._exit(int(args.get("exit_code", 1)))


@pipeline("test.hog")
async def hog(args: dict[str, Any], ctx: PipelineContext) -> dict[str, Any]:
    """Block the worker's event loop (CPU-bound work done wrong): no heartbeat meanwhile.

    Blocks only while the attempt is at most `block_attempts` (default: every attempt).
    """
    limit = args.get("block_attempts")
    if limit is None or ctx.attempt <= int(limit):
        time.sleep(float(args.get("block", 1)))  # starving the loop is the point
    return {"attempt": ctx.attempt}


@pipeline("test.record")
async def record(args: dict[str, Any], ctx: PipelineContext) -> AsyncIterator[dict[str, Any]]:
    """Sleep like `noop`, writing the database clock at its start and end to `e2e_runs`.

    The row is written on the pipeline's own connection, so it shows when the pipeline
    body really ran, whatever the runner wrote to dl_jobs.
    """
    steps = int(args.get("steps", 1))
    seconds = float(args.get("sleep", 0))
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        run_id = await connection.fetchval(
            "INSERT INTO e2e_runs (job_id, attempt, pid, worker_id, started_at)"
            " VALUES ($1, $2, $3, $4, clock_timestamp()) RETURNING id",
            ctx.job_id,
            ctx.attempt,
            os.getpid(),
            os.environ.get("WORKER_ID"),
        )
        for index in range(steps):
            await asyncio.sleep(seconds)
            yield {"processed": index + 1, "total": steps}
        await connection.execute(
            "UPDATE e2e_runs SET finished_at = clock_timestamp() WHERE id = $1", run_id
        )
    finally:
        await connection.close()
