"""Scenario 2: the full job lifecycle (dl_jobs, events, locks, leases) drained by our workers."""

from __future__ import annotations

from bench.context import RunContext
from bench.enqueue import ENQUEUE_PATH
from bench.lifecycle import lifecycle_drain
from bench.report import ScenarioResult, Target
from bench.scenarios import s1_peer
from bench.stats import Spread, ratio

NUMBER = 2
TITLE = "full lifecycle"
THROUGHPUT = "drain throughput"
RATIO = "ratio to peer (medians; spread from worst to best pairing)"
RATIO_TARGET = Target(">=", 0.60)


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Enqueue N noop jobs in-app, drain with W project workers; compare with scenario 1."""
    config = ctx.config
    result.settings = {
        **config.worker_settings(config.jobs),
        "enqueue": f"{ENQUEUE_PATH}, {config.enqueue_batch:,} per transaction",
    }
    rates: list[float] = []
    cross: list[float] = []
    try:
        for rep in range(config.reps):
            async with ctx.database(NUMBER) as dsn:
                drained = await lifecycle_drain(
                    ctx, dsn, config.jobs, scenario=NUMBER, rep=rep, prefix=f"s2r{rep}"
                )
            rates.append(drained.pgqueuer_log)
            cross.append(drained.dl_jobs)
            ctx.progress(f"s2 rep {rep + 1}: {rates[-1]:,.0f} jobs/s (dl_jobs {cross[-1]:,.0f})")
    finally:
        result.add(THROUGHPUT, "jobs/s", rates)
        result.add("drain throughput, dl_jobs started→finished (cross-check)", "jobs/s", cross)
        _record_ratio(ctx, result, rates)


def _record_ratio(ctx: RunContext, result: ScenarioResult, rates: list[float]) -> None:
    peer = ctx.results.get(s1_peer.NUMBER)
    peer_figure = peer.figure(s1_peer.THROUGHPUT) if peer is not None else None
    if peer_figure is None or peer_figure.spread is None:
        result.unavailable(RATIO, "x", "scenario 1 not run in this run", RATIO_TARGET)
    elif rates:
        result.add(RATIO, "x", ratio(Spread.of(rates), peer_figure.spread), RATIO_TARGET)
