"""Scenario 4: how soon one idle worker starts and finishes a job triggered over HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import asyncpg

from bench.context import RunContext
from bench.enqueue import trigger_bytes
from bench.http_load import HttpConnection
from bench.processes import Managed, Processes
from bench.report import ScenarioResult, Target
from bench.scenarios.s3_enqueue import TRIGGER_PATH
from bench.stats import percentile

NUMBER = 4
TITLE = "latency, idle worker"
POLL_SEC = 0.002
JOB_TIMEOUT_SEC = 30.0
FINAL = ("succeeded", "failed", "canceled", "lost")


class LatencyProbeFailed(RuntimeError):
    """A probe job did not succeed in time."""


@dataclass(frozen=True)
class Sample:
    """One job's timings on the database clock, in ms after its created_at."""

    to_running_ms: float
    to_succeeded_ms: float


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Trigger jobs one after another and wait for each to succeed before the next."""
    config = ctx.config
    result.settings = {
        "worker processes": 1,
        "concurrency": config.concurrency_label(),
        "batch size": config.batch_size,
        "jobs": config.latency_jobs,
        "warm-up jobs": config.latency_warmup,
        "poll interval ms": POLL_SEC * 1000,
        "API processes (requested)": config.api_workers,
    }
    figures: dict[str, list[float]] = {"run50": [], "run99": [], "ok50": [], "ok99": []}
    try:
        await _repeat(ctx, result, figures)
    finally:
        result.add("trigger→running p50", "ms", figures["run50"], Target("<", 10))
        result.add("trigger→running p99", "ms", figures["run99"], Target("<", 50))
        result.add("trigger→succeeded p50", "ms", figures["ok50"])
        result.add("trigger→succeeded p99", "ms", figures["ok99"])


async def _repeat(ctx: RunContext, result: ScenarioResult, figures: dict[str, list[float]]) -> None:
    for rep in range(ctx.config.reps):
        async with ctx.database(NUMBER) as dsn:
            with ctx.processes(NUMBER, rep) as processes:
                samples = await _measure(ctx, dsn, processes, result)
        to_running = [s.to_running_ms for s in samples]
        to_succeeded = [s.to_succeeded_ms for s in samples]
        figures["run50"].append(percentile(to_running, 50))
        figures["run99"].append(percentile(to_running, 99))
        figures["ok50"].append(percentile(to_succeeded, 50))
        figures["ok99"].append(percentile(to_succeeded, 99))
        ctx.progress(
            f"s4 rep {rep + 1}: to running p50 {figures['run50'][-1]:.1f} ms,"
            f" p99 {figures['run99'][-1]:.1f} ms"
        )


async def _measure(
    ctx: RunContext, dsn: str, processes: Processes, result: ScenarioResult
) -> list[Sample]:
    config = ctx.config
    api = await processes.start_api(dsn, config.api_workers)
    result.settings["API processes (running)"] = api.workers
    worker = processes.start_worker(
        dsn, "worker0", batch_size=config.batch_size, concurrency=config.concurrency
    )
    await processes.wait_ready(worker)
    connection = await asyncpg.connect(dsn)
    try:
        lookup = await connection.prepare(
            "SELECT status, created_at, started_at, finished_at FROM dl_jobs WHERE job_id = $1"
        )
        async with HttpConnection(api.host, api.port) as http:
            for index in range(config.latency_warmup):
                await _one(http, lookup, f"warm-{index}", worker)
            return [
                await _one(http, lookup, f"lat-{index}", worker)
                for index in range(config.latency_jobs)
            ]
    finally:
        await connection.close()


async def _one(
    http: HttpConnection, lookup: asyncpg.prepared_stmt.PreparedStatement, key: str, worker: Managed
) -> Sample:
    answer = await http.request("POST", TRIGGER_PATH, trigger_bytes(key))
    if not answer.ok:
        raise LatencyProbeFailed(f"trigger answered {answer.status}: {answer.body[:200]!r}")
    job_id = uuid.UUID(json.loads(answer.body)["job_id"])
    deadline = time.monotonic() + JOB_TIMEOUT_SEC
    while True:
        row = await lookup.fetchrow(job_id)
        if row is not None and row["status"] in FINAL:
            break
        if time.monotonic() > deadline:
            Processes.check_alive(worker)
            raise LatencyProbeFailed(f"job {job_id} not finished in {JOB_TIMEOUT_SEC}s")
        await asyncio.sleep(POLL_SEC)
    if row["status"] != "succeeded":
        raise LatencyProbeFailed(f"job {job_id} ended {row['status']}")
    created = row["created_at"]
    return Sample(
        to_running_ms=(row["started_at"] - created).total_seconds() * 1000,
        to_succeeded_ms=(row["finished_at"] - created).total_seconds() * 1000,
    )
