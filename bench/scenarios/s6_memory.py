"""Scenario 6: does one worker's memory grow over 100,000 jobs?"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import psutil  # type: ignore[import-untyped]

from bench.context import RunContext
from bench.enqueue import ENQUEUE_PATH, in_app
from bench.measure import db_now, wait_lifecycle_done
from bench.processes import Managed, Processes
from bench.report import ScenarioResult, Target

NUMBER = 6
TITLE = "worker memory"
MIB = 1024 * 1024
SAMPLE_SEC = 0.5


def rss_mib(managed: Managed) -> float:
    """The resident set size of the worker process, in MiB."""
    return float(psutil.Process(managed.pid).memory_info().rss) / MIB


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Warm up one worker, read its RSS, run many more jobs through it, read it again."""
    config = ctx.config
    result.settings = {
        "worker processes": 1,
        "concurrency": config.memory_concurrency,
        "batch size": config.batch_size,
        "warm-up jobs": config.memory_warmup,
        "jobs": config.memory_jobs,
        "enqueue": f"{ENQUEUE_PATH}, {config.memory_batch:,} per transaction, while draining",
    }
    before: list[float] = []
    after: list[float] = []
    peak: list[float] = []
    try:
        for rep in range(config.reps):
            async with ctx.database(NUMBER) as dsn:
                with ctx.processes(NUMBER, rep) as processes:
                    figures = await _measure(ctx, dsn, processes)
            before.append(figures[0])
            after.append(figures[1])
            peak.append(figures[2])
            ctx.progress(f"s6 rep {rep + 1}: RSS {figures[0]:.1f} -> {figures[1]:.1f} MiB")
    finally:
        result.add("worker RSS after warm-up", "MiB", before)
        result.add("worker RSS after the run", "MiB", after)
        result.add("worker RSS peak during the run", "MiB", peak)
        growth = [a - b for a, b in zip(after, before, strict=True)]
        result.add("worker RSS growth", "MiB", growth, Target("<", 20))


async def _measure(ctx: RunContext, dsn: str, processes: Processes) -> tuple[float, float, float]:
    config = ctx.config
    worker = processes.start_worker(
        dsn, "worker0", batch_size=config.batch_size, concurrency=config.memory_concurrency
    )
    await processes.wait_ready(worker)
    connection = await asyncpg.connect(dsn)
    try:
        async with in_app(dsn) as app:
            since = await db_now(connection)
            await app.enqueue(config.memory_warmup, config.memory_batch, "warm")
            await wait_lifecycle_done(connection, [worker], config.memory_warmup, since)
            before = rss_mib(worker)
            peak = before
            stop = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not stop.is_set():
                    peak = max(peak, rss_mib(worker))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), SAMPLE_SEC)

            sampler = asyncio.create_task(sample())
            try:
                since = await db_now(connection)
                await app.enqueue(config.memory_jobs, config.memory_batch, "mem")
                await wait_lifecycle_done(connection, [worker], config.memory_jobs, since)
            finally:
                stop.set()
                await sampler
            after = rss_mib(worker)
            return before, after, max(peak, after)
    finally:
        await connection.close()
