"""Scenario 5: status lookups and lifecycle throughput without and with a 1M-job history."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import asyncpg

from bench.context import RunContext
from bench.history import EVENTS_PER_JOB, build_history
from bench.http_load import HttpConnection, encode_request
from bench.lifecycle import lifecycle_drain
from bench.processes import ApiServer, Processes
from bench.report import ScenarioResult, Target
from bench.stats import Spread, percentile, ratio

NUMBER = 5
TITLE = "scale with history"
LOOKUP_WARMUP = 50
LOOKUP_TARGET = Target("<", 2)


class LookupFailed(RuntimeError):
    """A status lookup did not answer 200."""


@dataclass
class Phase:
    """Per-repetition figures of one phase (without or with history)."""

    rates: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """One database: measure, add the history once, measure again."""
    config = ctx.config
    result.settings = {
        **config.worker_settings(config.scale_jobs),
        "lookups": config.scale_lookups,
        "history jobs": config.history_jobs,
        "events per history job": EVENTS_PER_JOB,
        "API processes (requested)": config.api_workers,
    }
    without = Phase()
    with_history = Phase()
    try:
        async with ctx.database(NUMBER) as dsn:
            with ctx.processes(NUMBER, "api") as processes:
                api = await processes.start_api(dsn, config.api_workers)
                result.settings["API processes (running)"] = api.workers
                await _phase(ctx, dsn, api, "without", without)
                started = time.perf_counter()
                await build_history(dsn, config.history_jobs, ctx.progress)
                result.settings["history build s"] = round(time.perf_counter() - started, 1)
                await _phase(ctx, dsn, api, "with", with_history)
    finally:
        _record(result, without, with_history)


def _record(result: ScenarioResult, without: Phase, with_history: Phase) -> None:
    result.add("lifecycle throughput, no history", "jobs/s", without.rates)
    result.add("lifecycle throughput, with history", "jobs/s", with_history.rates)
    if without.rates and with_history.rates:
        result.add(
            "throughput ratio with/without history (medians)",
            "x",
            ratio(Spread.of(with_history.rates), Spread.of(without.rates)),
            Target(">=", 0.90),
        )
    result.add("status lookup p50, no history", "ms", without.p50, LOOKUP_TARGET)
    result.add("status lookup p99, no history", "ms", without.p99)
    result.add("status lookup p50, with history", "ms", with_history.p50, LOOKUP_TARGET)
    result.add("status lookup p99, with history", "ms", with_history.p99)
    if without.p50 and with_history.p50:
        result.add(
            "lookup p50 ratio with/without history (medians)",
            "x",
            ratio(Spread.of(with_history.p50), Spread.of(without.p50)),
        )


async def _phase(ctx: RunContext, dsn: str, api: ApiServer, label: str, phase: Phase) -> None:
    """Per repetition: a lifecycle drain, then status lookups; figures go into `phase`."""
    config = ctx.config
    for rep in range(config.reps):
        drained = await lifecycle_drain(
            ctx,
            dsn,
            config.scale_jobs,
            scenario=NUMBER,
            rep=f"{label}-r{rep}",
            prefix=f"s5{label}{rep}",
        )
        phase.rates.append(drained.pgqueuer_log)
        Processes.check_alive(api.managed)
        latencies = await _lookups(dsn, api, config.scale_lookups)
        phase.p50.append(percentile(latencies, 50))
        phase.p99.append(percentile(latencies, 99))
        ctx.progress(
            f"s5 {label} history rep {rep + 1}: {phase.rates[-1]:,.0f} jobs/s,"
            f" lookup p50 {phase.p50[-1]:.2f} ms"
        )


async def _lookups(dsn: str, api: ApiServer, count: int) -> list[float]:
    """`count` sequential status lookups of random existing jobs; latencies in ms."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT job_id FROM dl_jobs ORDER BY random() LIMIT $1", count
        )
    finally:
        await connection.close()
    ids = [str(row["job_id"]) for row in rows]
    picks = ids if len(ids) >= count else [random.choice(ids) for _ in range(count)]
    latencies: list[float] = []
    async with HttpConnection(api.host, api.port) as http:
        for index, job_id in enumerate([*picks[:LOOKUP_WARMUP], *picks]):
            raw = encode_request("GET", f"/api/v1/jobs/{job_id}/status", http.host_header)
            started = time.perf_counter()
            answer = await http.send(raw)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if answer.status != 200:
                raise LookupFailed(f"status lookup answered {answer.status}: {answer.body[:200]!r}")
            if index >= min(LOOKUP_WARMUP, len(picks)):
                latencies.append(elapsed_ms)
    return latencies
