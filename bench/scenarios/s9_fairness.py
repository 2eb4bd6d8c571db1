"""Scenario 9: what a fair queue costs, and what it buys a small tenant behind a big one.

Cost: the lifecycle drain of scenario 2 over 10 tenants, in a queue that is fair and in one
that is not, alternating in each repetition so both see the same machine; the ratio is the
cost of the rounds (their lookups at enqueue, their index). Benefit: tenant A's backlog is
queued and the fleet is busy with it when tenant B triggers 100 jobs; B's wait (trigger to
start, from the database) with fairness and without.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.context import RunContext
from bench.enqueue import in_app
from bench.lifecycle import lifecycle_drain
from bench.measure import DrainIncomplete, db_now, drain_timeout, wait_lifecycle_done
from bench.processes import Processes
from bench.report import ScenarioResult, Target
from bench.stats import Spread, ratio

NUMBER = 9
TITLE = "fairness"
UNFAIR = "drain throughput, 10 tenants, not fair"
FAIR = "drain throughput, 10 tenants, fair"
COST = "ratio fair / not fair (medians)"
COST_TARGET = Target(">=", 0.90)
TENANTS = 10
B_JOBS = 100
B_P50_FAIR = "B's wait p50, fair"
B_P99_FAIR = "B's wait p99, fair"
B_P99_UNFAIR = "B's wait p99, not fair"
B_P99_TARGET = Target("<=", 5.0)
POLL_SEC = 0.1


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Per repetition: the two drains, then B behind A's backlog, fair and not."""
    config = ctx.config
    backlog = config.fairness_backlog
    b_jobs = min(B_JOBS, max(10, backlog // 100))
    result.settings = {
        **config.worker_settings(config.jobs),
        "tenants (drains)": TENANTS,
        "A's backlog": backlog,
        "B's jobs": b_jobs,
        "B triggers": f"once {backlog // 100:,} of A's jobs started",
    }
    unfair: list[float] = []
    fair: list[float] = []
    p50_fair: list[float] = []
    p99_fair: list[float] = []
    p99_unfair: list[float] = []
    try:
        for rep in range(config.reps):
            for is_fair, rates in ((False, unfair), (True, fair)):
                async with ctx.database(NUMBER) as dsn:
                    drained = await lifecycle_drain(
                        ctx,
                        dsn,
                        config.jobs,
                        scenario=NUMBER,
                        rep=f"{rep}{'fair' if is_fair else 'unfair'}",
                        prefix=f"s9d{rep}",
                        fair=is_fair,
                        tenants=TENANTS,
                    )
                rates.append(drained.dl_jobs)
            for is_fair in (True, False):
                async with ctx.database(NUMBER) as dsn:
                    waits = await _b_behind_a(ctx, dsn, backlog, b_jobs, rep, is_fair)
                if is_fair:
                    p50_fair.append(waits[0])
                    p99_fair.append(waits[1])
                else:
                    p99_unfair.append(waits[1])
            ctx.progress(
                f"s9 rep {rep + 1}: {unfair[-1]:,.0f} jobs/s not fair, {fair[-1]:,.0f} fair;"
                f" B's p99 {p99_fair[-1]:.2f} s fair, {p99_unfair[-1]:.1f} s not"
            )
    finally:
        result.add(UNFAIR, "jobs/s", unfair)
        result.add(FAIR, "jobs/s", fair)
        if unfair and fair:
            result.add(COST, "x", ratio(Spread.of(fair), Spread.of(unfair)), COST_TARGET)
        result.add(B_P50_FAIR, "s", p50_fair)
        result.add(B_P99_FAIR, "s", p99_fair, B_P99_TARGET)
        result.add(B_P99_UNFAIR, "s", p99_unfair)


async def _b_behind_a(
    ctx: RunContext, dsn: str, backlog: int, b_jobs: int, rep: int, fair: bool
) -> tuple[float, float]:
    """A's backlog queued, the fleet busy with it, then B's jobs: their wait p50 and p99.

    The fleet drains everything: without fairness B's jobs start after all of A's.
    """
    config = ctx.config
    connection = await asyncpg.connect(dsn)
    try:
        since = await db_now(connection)
        async with in_app(dsn) as app:
            await app.set_fairness(fair)
            await app.enqueue(backlog, config.enqueue_batch, f"s9a{rep}", tenant="A")
            label = f"{rep}{'fair' if fair else 'unfair'}-b"
            with ctx.processes(NUMBER, label) as processes:
                workers = [
                    processes.start_worker(
                        dsn,
                        f"worker{n}",
                        batch_size=config.batch_size,
                        concurrency=config.concurrency,
                    )
                    for n in range(config.workers)
                ]
                deadline = time.monotonic() + drain_timeout(backlog)
                while (
                    await connection.fetchval(
                        "SELECT count(*) FROM dl_jobs WHERE started_at IS NOT NULL"
                    )
                    < backlog // 100
                ):
                    Processes.check_alive(*workers)
                    if time.monotonic() > deadline:
                        raise DrainIncomplete("A's jobs did not start")
                    await asyncio.sleep(POLL_SEC)
                await app.enqueue(b_jobs, b_jobs, f"s9b{rep}", tenant="B")
                await wait_lifecycle_done(connection, workers, backlog + b_jobs, since)
                processes.stop(*workers)
        row = await connection.fetchrow(
            """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY w) AS p50,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY w) AS p99
               FROM (SELECT extract(epoch FROM started_at - created_at) AS w
                     FROM dl_jobs WHERE partition_key = 'B') waits"""
        )
    finally:
        await connection.close()
    return float(row["p50"]), float(row["p99"])
