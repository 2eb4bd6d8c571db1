"""Scenario 8: what rate limits cost when they do not bind, and how much of them is used
when they do.

Not binding: the lifecycle drain of scenario 2 with and without limits far above the
fleet's speed (the queue's and 16 rate keys'), alternating in each repetition so both see the
same machine; the ratio is the cost of asking the buckets on every start. Binding: a
backlog against a queue limit below the fleet's speed; the rate achieved (first start to
last start, from the database) against the rate allowed.
"""

from __future__ import annotations

import asyncpg

from app.domain.rate_limits import MAX_RATE_COUNT, QueueLimits, RateLimit
from bench.context import RunContext
from bench.enqueue import in_app
from bench.lifecycle import lifecycle_drain
from bench.measure import db_now, wait_lifecycle_done
from bench.report import ScenarioResult, Target
from bench.stats import Spread, ratio

NUMBER = 8
TITLE = "rate limits"
FREE = "drain throughput, no limits"
LOOSE = "drain throughput, limits set but not binding"
COST = "ratio not binding / no limits (medians)"
COST_TARGET = Target(">=", 0.90)
USED = "binding: starts/s achieved / allowed"
USED_TARGET = Target(">=", 0.90)
RATE_KEYS = 16
# Far above what this fleet can start: every start asks the buckets, none is refused.
LOOSE_LIMITS = QueueLimits(
    start=RateLimit(count=MAX_RATE_COUNT, period_sec=0.01),
    per_rate_key=RateLimit(count=MAX_RATE_COUNT, period_sec=0.01),
)
# Starts/s for the queue; each of 4 keys may do 50/s, so the queue binds (keys bind only when
# at most one key is left in the backlog).
BINDING_RATE = 100
BINDING_KEYS = 4
BINDING_LIMITS = QueueLimits(
    start=RateLimit(count=BINDING_RATE, period_sec=1),
    per_rate_key=RateLimit(count=50, period_sec=1),
)
BINDING_SEC = 8


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Per repetition: a drain without limits, one with loose limits, one binding."""
    config = ctx.config
    binding_jobs = BINDING_RATE * BINDING_SEC
    result.settings = {
        **config.worker_settings(config.jobs),
        "loose limits": "10,000 per 0.01 s for the queue and each of 16 rate keys",
        "binding limits": f"{BINDING_RATE}/s for the queue, 50/s per key over 4 keys",
        "binding jobs": binding_jobs,
    }
    free: list[float] = []
    loose: list[float] = []
    used: list[float] = []
    try:
        for rep in range(config.reps):
            async with ctx.database(NUMBER) as dsn:
                drained = await lifecycle_drain(
                    ctx, dsn, config.jobs, scenario=NUMBER, rep=f"{rep}free", prefix=f"s8f{rep}"
                )
            free.append(drained.dl_jobs)
            async with ctx.database(NUMBER) as dsn:
                drained = await lifecycle_drain(
                    ctx,
                    dsn,
                    config.jobs,
                    scenario=NUMBER,
                    rep=f"{rep}loose",
                    prefix=f"s8l{rep}",
                    limits=LOOSE_LIMITS,
                    rate_keys=RATE_KEYS,
                )
            loose.append(drained.dl_jobs)
            async with ctx.database(NUMBER) as dsn:
                used.append(await _binding_drain(ctx, dsn, binding_jobs, rep) / BINDING_RATE)
            ctx.progress(
                f"s8 rep {rep + 1}: {free[-1]:,.0f} jobs/s free, {loose[-1]:,.0f} with loose"
                f" limits, {used[-1]:.1%} of a binding limit used"
            )
    finally:
        result.add(FREE, "jobs/s", free)
        result.add(LOOSE, "jobs/s", loose)
        if free and loose:
            result.add(COST, "x", ratio(Spread.of(loose), Spread.of(free)), COST_TARGET)
        result.add(USED, "x", used, USED_TARGET)


async def _binding_drain(ctx: RunContext, dsn: str, jobs: int, rep: int) -> float:
    """Drain a backlog under the binding limits; starts per second, first start to last.

    Not lifecycle_drain: a postponed job gets a new dispatch, so pgqueuer's log holds more
    completions than jobs; the started events are the measure.
    """
    config = ctx.config
    connection = await asyncpg.connect(dsn)
    try:
        since = await db_now(connection)
        async with in_app(dsn) as app:
            await app.set_limits(BINDING_LIMITS)
            await app.enqueue(jobs, config.enqueue_batch, f"s8b{rep}", BINDING_KEYS)
        with ctx.processes(NUMBER, f"{rep}binding") as processes:
            workers = [
                processes.start_worker(
                    dsn, f"worker{n}", batch_size=config.batch_size, concurrency=config.concurrency
                )
                for n in range(config.workers)
            ]
            await wait_lifecycle_done(connection, workers, jobs, since)
            processes.stop(*workers)
        row = await connection.fetchrow(
            "SELECT count(*) AS n, extract(epoch FROM max(at) - min(at)) AS span"
            " FROM dl_job_events WHERE event = 'started'"
        )
    finally:
        await connection.close()
    # n starts span n - 1 gaps.
    return float((row["n"] - 1) / row["span"]) if row["span"] else 0.0
