"""Scenario 1: bare pgqueuer on the same server, the baseline the lifecycle is compared to."""

from __future__ import annotations

import asyncpg

from app.db.pgqueuer_schema import pgqueuer_settings, queries_for
from bench.context import RunContext
from bench.measure import db_now, pgqueuer_span, wait_queue_empty
from bench.peer_worker import ENTRYPOINT
from bench.processes import PEER_WORKER
from bench.report import ScenarioResult
from bench.server import QUEUE_SCHEMA

NUMBER = 1
TITLE = "peer baseline (bare pgqueuer)"
THROUGHPUT = "drain throughput"


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Enqueue N jobs with pgqueuer's Queries.enqueue, drain with W peer workers."""
    config = ctx.config
    result.settings = {
        **config.worker_settings(config.jobs),
        "enqueue": f"Queries.enqueue, {config.enqueue_batch:,} per call",
    }
    rates: list[float] = []
    try:
        for rep in range(config.reps):
            async with ctx.database(NUMBER) as dsn:
                rates.append(await _drain(ctx, dsn, rep))
            ctx.progress(f"s1 rep {rep + 1}: {rates[-1]:,.0f} jobs/s")
    finally:
        result.add(THROUGHPUT, "jobs/s", rates)


async def _drain(ctx: RunContext, dsn: str, rep: int) -> float:
    config = ctx.config
    connection = await asyncpg.connect(dsn)
    try:
        since = await db_now(connection)
        queries = queries_for(connection, pgqueuer_settings(QUEUE_SCHEMA))
        for start in range(0, config.jobs, config.enqueue_batch):
            count = min(config.enqueue_batch, config.jobs - start)
            await queries.enqueue([ENTRYPOINT] * count, [None] * count, [0] * count)
        with ctx.processes(NUMBER, rep) as processes:
            workers = [
                processes.start_worker(
                    dsn,
                    f"peer{n}",
                    batch_size=config.batch_size,
                    concurrency=config.concurrency,
                    factory=PEER_WORKER,
                )
                for n in range(config.workers)
            ]
            await wait_queue_empty(connection, workers, config.jobs)
            processes.stop(*workers)
        return (await pgqueuer_span(connection, config.jobs, since)).rate
    finally:
        await connection.close()
