"""Pipelines that only the end-to-end tests register, in the test process and in the workers.

Workers import this module through DL_PIPELINE_MODULES="tests.support.e2e_pipelines"
(their working directory is the repository root).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.db.engine import create_engine, create_session_factory
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_in_session
from app.pipelines.context import PipelineContext
from app.pipelines.registry import pipeline
from app.pipelines.results import Result
from app.settings import get_settings

# The table `test.record` writes to; tests create it with RUN_LOG_DDL before enqueueing.
RUN_LOG_DDL = """
CREATE TABLE e2e_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Chosen by the pipeline: it can find its row even if the insert's reply was lost.
    run_key uuid NOT NULL UNIQUE,
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    worker_id text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,  -- the body ran to its end
    stopped_at timestamptz  -- the body stopped before its end (canceled, or its writes failed)
)
"""
# How long a stopped body keeps trying to record when it stopped (the database may be down
# or out of reach; the record is what lets a test check that no two runs overlapped).
STOP_RECORD_SEC = 120.0


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
    body really ran, whatever the runner wrote to dl_jobs. A body that stops before its end
    writes when it stopped, read on this host's clock (the database's host in these tests),
    and keeps trying until that write lands.
    """
    steps = int(args.get("steps", 1))
    seconds = float(args.get("sleep", 0))
    run_key = uuid.uuid4()
    connection = await _connect()
    finished = False
    # When the body was stopped: noted before a cancelled write's rollback, which behind a
    # pooler waits in its queue until the server is back, and would date the stop late.
    stopped: list[datetime] = []
    try:
        await _write(
            stopped,
            connection,
            "INSERT INTO e2e_runs (run_key, job_id, attempt, pid, worker_id, started_at)"
            " VALUES ($1, $2, $3, $4, $5, clock_timestamp())",
            run_key,
            ctx.job_id,
            ctx.attempt,
            os.getpid(),
            os.environ.get("WORKER_ID"),
        )
        for index in range(steps):
            await asyncio.sleep(seconds)
            yield {"processed": index + 1, "total": steps}
        await _write(
            stopped,
            connection,
            "UPDATE e2e_runs SET finished_at = clock_timestamp() WHERE run_key = $1",
            run_key,
        )
        finished = True
    finally:
        # Also when the insert failed: it may have committed with only its reply lost.
        if not finished:
            stopped_at = stopped[0] if stopped else datetime.now(UTC)
            connection = await _record_stop_uncancelled(connection, run_key, stopped_at)
        connection.terminate()


async def _connect(timeout: float = 60) -> asyncpg.Connection:
    """A connection to the worker's DATABASE_URL, which may be a pooler in transaction mode.

    A pipeline's writes go where the service's pooled writes go. Through such a pooler a
    statement kept by name may be missing on the next server connection, or be another
    client's: no statement cache.
    """
    connection: asyncpg.Connection = await asyncpg.connect(
        os.environ["DATABASE_URL"], timeout=timeout, statement_cache_size=0
    )
    return connection


async def _write(
    stopped: list[datetime], connection: asyncpg.Connection, sql: str, *args: Any
) -> None:
    """One statement in a transaction of its own, so that its prepare and execute reach the
    same server connection through a transaction-mode pooler. A write that is cancelled or
    fails notes the time first into `stopped` (a rolled-back write changed nothing)."""
    async with connection.transaction():
        try:
            await connection.execute(sql, *args)
        except BaseException:
            if not stopped:
                stopped.append(datetime.now(UTC))
            raise


async def _record_stop_uncancelled(
    connection: asyncpg.Connection, run_key: uuid.UUID, stopped_at: datetime
) -> asyncpg.Connection:
    """_record_stop, seen through to its end even if the runner cancels the body meanwhile.

    A body that is already stopping (its own write failed with the server) may be cancelled
    again by its runner; the record must still land, and the cancellation is passed on.
    """
    record = asyncio.create_task(_record_stop(connection, run_key, stopped_at))
    cancelled = False
    while not record.done():
        try:
            await asyncio.shield(record)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return record.result()


async def _record_stop(
    connection: asyncpg.Connection, run_key: uuid.UUID, stopped_at: datetime
) -> asyncpg.Connection:
    """Write `stopped_at`, reconnecting until it lands or STOP_RECORD_SEC pass."""
    deadline = time.monotonic() + STOP_RECORD_SEC
    while True:
        try:
            if connection.is_closed():
                connection = await _connect(timeout=5)
            await _write(
                [],
                connection,
                "UPDATE e2e_runs SET stopped_at = $2 WHERE run_key = $1",
                run_key,
                stopped_at,
            )
            return connection
        except Exception as exc:  # whatever went wrong, the stop must be recorded
            if time.monotonic() > deadline:
                raise
            print(f"recording the stop of run {run_key} failed: {exc!r}", file=sys.stderr)
            connection.terminate()
            await asyncio.sleep(0.5)


# --- results: one pipeline per shape, each returning args["value"] -----------------------


@pipeline("test.result.coroutine")
async def result_coroutine(args: dict[str, Any], ctx: PipelineContext) -> Any:
    """Return `value` after `sleep` seconds."""
    await asyncio.sleep(float(args.get("sleep", 0)))
    return args["value"]


@pipeline("test.result.function")
def result_function(args: dict[str, Any]) -> Any:
    """A plain function (run in a thread): return `value` after `sleep` seconds."""
    time.sleep(float(args.get("sleep", 0)))
    return args["value"]


@pipeline("test.result.generator")
async def result_generator(args: dict[str, Any], ctx: PipelineContext) -> AsyncIterator[Any]:
    """Set a first result, report `steps` steps of progress, then yield `Result(value)`:
    the last one set wins."""
    ctx.set_result({"replaced": True})
    steps = int(args.get("steps", 2))
    for index in range(steps):
        await asyncio.sleep(float(args.get("sleep", 0)))
        yield {"processed": index + 1, "total": steps}
    yield Result(args["value"])


@pipeline("test.result.flaky")
async def result_flaky(args: dict[str, Any], ctx: PipelineContext) -> dict[str, int]:
    """Set a result naming the attempt, then fail while the attempt is at most
    `fail_attempts`; the attempt that succeeds returns its own."""
    ctx.set_result({"failed_attempt": ctx.attempt})
    if ctx.attempt <= int(args.get("fail_attempts", 0)):
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    return {"attempt": ctx.attempt}


@pipeline("test.result.chars")
async def result_chars(args: dict[str, Any], ctx: PipelineContext) -> str:
    """Return a string of `chars` x characters (its JSON is chars + 2 bytes)."""
    return "x" * int(args["chars"])


class Unencodable:
    """A type no JSON encoder knows."""


@pipeline("test.result.unencodable")
async def result_unencodable(args: dict[str, Any], ctx: PipelineContext) -> dict[str, Any]:
    """Return a dict holding an Unencodable; with `nul`, a string holding NUL instead."""
    if args.get("nul"):
        return {"text": "a\x00b"}
    return {"rows": 3, "item": Unencodable()}


@pipeline("test.trigger_child")
async def trigger_child(args: dict[str, Any], ctx: PipelineContext) -> dict[str, str]:
    """Create a `noop` job in a transaction of its own, as a pipeline that starts follow-up
    work does; return its id."""
    settings = get_settings()
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    spec = JobCreate(
        queue=str(args.get("queue", "etl.default")),
        task="noop",
        lock_key=f"child-of-{ctx.job_id}",
        args={"steps": 1, "sleep": 0},
        idempotency_key=f"child-of-{ctx.job_id}",
    )
    try:
        async with create_session_factory(engine)() as session, session.begin():
            created = await enqueue_in_session(session, spec, settings)
    finally:
        await engine.dispose()
    return {"child": str(created.job_id)}
