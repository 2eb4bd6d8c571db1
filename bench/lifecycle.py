"""One repetition of the full lifecycle drain (scenarios 2 and 5): enqueue, then drain.

Jobs are enqueued in-app first; W project workers start afterwards, exactly as the peer
baseline does, and the rate comes from database timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.domain.rate_limits import QueueLimits
from bench.context import RunContext
from bench.enqueue import in_app
from bench.measure import db_now, dl_jobs_span, pgqueuer_span, wait_lifecycle_done


@dataclass(frozen=True)
class DrainRates:
    """Jobs per second of one drain, read two ways."""

    pgqueuer_log: float  # first pick to last completion, as for the peer
    dl_jobs: float  # min(started_at) to max(finished_at)


async def lifecycle_drain(
    ctx: RunContext,
    dsn: str,
    jobs: int,
    *,
    scenario: int,
    rep: int | str,
    prefix: str,
    limits: QueueLimits | None = None,
    rate_keys: int = 0,
    fair: bool = False,
    tenants: int = 0,
) -> DrainRates:
    """Enqueue `jobs` noop jobs, drain them with the configured fleet, read the rates.

    With `limits`, the queue carries those rate limits and the jobs name `rate_keys` keys;
    with `fair`, the queue is fair; with `tenants`, the jobs carry that many partition_keys.
    """
    config = ctx.config
    connection = await asyncpg.connect(dsn)
    try:
        since = await db_now(connection)
        async with in_app(dsn) as app:
            await app.set_limits(limits or QueueLimits())
            if fair:
                await app.set_fairness(True)
            await app.enqueue(jobs, config.enqueue_batch, prefix, rate_keys, tenants)
        with ctx.processes(scenario, rep) as processes:
            workers = [
                processes.start_worker(
                    dsn,
                    f"worker{n}",
                    batch_size=config.batch_size,
                    concurrency=config.concurrency,
                )
                for n in range(config.workers)
            ]
            await wait_lifecycle_done(connection, workers, jobs, since)
            processes.stop(*workers)
        pgq = await pgqueuer_span(connection, jobs, since)
        dl = await dl_jobs_span(connection, jobs, since)
        return DrainRates(pgqueuer_log=pgq.rate, dl_jobs=dl.rate)
    finally:
        await connection.close()
