"""Scenario 3: enqueue rates, single triggers over HTTP and bulk (in-app and over HTTP)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from bench.context import RunContext
from bench.enqueue import ENQUEUE_PATH, in_app, trigger_body, trigger_bytes
from bench.http_load import HttpConnection, encode_request, run_load
from bench.processes import ApiServer
from bench.report import ScenarioResult, Target
from bench.stats import percentile

NUMBER = 3
TITLE = "enqueue"
TRIGGER_PATH = "/api/v1/jobs/trigger"
BULK_PATH = "/api/v1/jobs/trigger/bulk"
BULK_MISSING = (404, 405)
BULK_TARGET = Target(">=", 20_000)


@dataclass
class Rep:
    """What one repetition measured."""

    trigger_rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    trigger_errors: int = 0
    in_app_rate: float = 0.0
    bulk_rate: float | None = None  # None: the bulk endpoint is not there
    bulk_errors: int = 0
    bulk_missing: str | None = None  # why the bulk endpoint could not be measured
    notes: list[str] = field(default_factory=list)


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Per repetition: a fresh database and API for HTTP, another fresh database in-app."""
    config = ctx.config
    result.settings = {
        "API processes (requested)": config.api_workers,
        "HTTP connections": config.http_concurrency,
        "trigger requests": config.http_requests,
        "warm-up requests": config.http_warmup,
        "bulk jobs": config.bulk_jobs,
        "in-app": f"{ENQUEUE_PATH}, {config.bulk_tx_size:,} per transaction",
        "HTTP bulk": f"{config.http_bulk_size} per request, {config.http_bulk_concurrency} conns",
        "worker processes": 0,
    }
    reps: list[Rep] = []
    try:
        await _repeat(ctx, result, reps)
    finally:
        _record(result, reps)


async def _repeat(ctx: RunContext, result: ScenarioResult, reps: list[Rep]) -> None:
    config = ctx.config
    for index in range(config.reps):
        rep = Rep()
        async with ctx.database(NUMBER) as dsn:
            with ctx.processes(NUMBER, index) as processes:
                api = await processes.start_api(dsn, config.api_workers)
                result.settings["API processes (running)"] = api.workers
                if not api.workers_flag and config.api_workers > 1:
                    rep.notes.append("`serve --workers` not supported: one API process")
                await _triggers(ctx, api, rep)
                await _http_bulk(ctx, api, rep)
                processes.check_alive(api.managed)
        async with ctx.database(NUMBER) as dsn:
            rep.in_app_rate = await _in_app_bulk(ctx, dsn)
        reps.append(rep)
        bulk = f"{rep.bulk_rate:,.0f}" if rep.bulk_rate is not None else "n/a"
        ctx.progress(
            f"s3 rep {index + 1}: trigger {rep.trigger_rate:,.0f} req/s p50 {rep.p50_ms:.1f} ms,"
            f" in-app bulk {rep.in_app_rate:,.0f} jobs/s, HTTP bulk {bulk} jobs/s"
        )


async def _triggers(ctx: RunContext, api: ApiServer, rep: Rep) -> None:
    config = ctx.config
    warm = await run_load(
        api.host, api.port, _TriggerRequests("warm"), config.http_warmup, config.http_concurrency
    )
    if warm.errors:
        rep.notes.append(f"warm-up errors: {warm.errors} ({warm.error_samples[:1]})")
    load = await run_load(
        api.host, api.port, _TriggerRequests("k"), config.http_requests, config.http_concurrency
    )
    rep.trigger_rate = load.rate
    rep.trigger_errors = load.errors
    if load.latencies_ms:
        rep.p50_ms = percentile(load.latencies_ms, 50)
        rep.p99_ms = percentile(load.latencies_ms, 99)
    if load.errors:
        rep.notes.append(f"trigger errors: {load.error_samples}")


@dataclass(frozen=True)
class _TriggerRequests:
    """Request number n: one trigger with lock_key `<prefix>-<n>`."""

    prefix: str

    def __call__(self, index: int, host: str) -> bytes:
        return encode_request("POST", TRIGGER_PATH, host, trigger_bytes(f"{self.prefix}-{index}"))


@dataclass(frozen=True)
class _BulkRequests:
    """Request number n: the n-th slice of `size` triggers out of `total`."""

    prefix: str
    size: int
    total: int

    def body(self, index: int) -> bytes:
        first = index * self.size
        last = min(self.total, first + self.size)
        jobs = [trigger_body(f"{self.prefix}-{n}") for n in range(first, last)]
        return json.dumps({"jobs": jobs}, separators=(",", ":")).encode()

    def __call__(self, index: int, host: str) -> bytes:
        return encode_request("POST", BULK_PATH, host, self.body(index))


async def _http_bulk(ctx: RunContext, api: ApiServer, rep: Rep) -> None:
    config = ctx.config
    probe = _BulkRequests("bulk-warm", 10, 10)
    async with HttpConnection(api.host, api.port) as connection:
        answer = await connection.request("POST", BULK_PATH, probe.body(0))
    if answer.status in BULK_MISSING:
        rep.bulk_missing = f"{BULK_PATH} answered {answer.status}"
        return
    if not answer.ok:
        rep.notes.append(f"bulk probe answered {answer.status}: {answer.body[:200]!r}")
    requests = _BulkRequests("b", config.http_bulk_size, config.bulk_jobs)
    load = await run_load(
        api.host,
        api.port,
        requests,
        config.http_bulk_requests(),
        config.http_bulk_concurrency,
        keep_bodies=True,
    )
    created = sum(_created(response.body) for response in load.responses if response.ok)
    rep.bulk_errors = load.errors
    if load.errors:
        rep.notes.append(f"bulk errors: {load.error_samples}")
    if created != config.bulk_jobs:
        rep.notes.append(f"bulk created {created} of {config.bulk_jobs} jobs")
    rep.bulk_rate = created / load.elapsed_sec if load.elapsed_sec > 0 else 0.0


def _created(body: bytes) -> int:
    try:
        return sum(1 for job in json.loads(body)["jobs"] if job.get("created"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0


async def _in_app_bulk(ctx: RunContext, dsn: str) -> float:
    config = ctx.config
    async with in_app(dsn) as app:
        await app.enqueue(min(100, config.bulk_tx_size), config.bulk_tx_size, "warm")
        started = time.perf_counter()
        await app.enqueue(config.bulk_jobs, config.bulk_tx_size, "bulk")
        return config.bulk_jobs / (time.perf_counter() - started)


def _record(result: ScenarioResult, reps: list[Rep]) -> None:
    if not reps:
        return
    result.add("trigger over HTTP", "req/s", [r.trigger_rate for r in reps], Target(">=", 1_500))
    result.add("trigger latency p50", "ms", [r.p50_ms for r in reps])
    result.add("trigger latency p99", "ms", [r.p99_ms for r in reps])
    result.add("trigger errors (non-2xx)", "requests", [float(r.trigger_errors) for r in reps])
    result.add("bulk in-app", "jobs/s", [r.in_app_rate for r in reps], BULK_TARGET)
    bulk = [r.bulk_rate for r in reps if r.bulk_rate is not None]
    if bulk:
        result.add("bulk over HTTP", "jobs/s", bulk, BULK_TARGET)
        result.add("bulk HTTP errors (non-2xx)", "requests", [float(r.bulk_errors) for r in reps])
    else:
        missing = next((r.bulk_missing for r in reps if r.bulk_missing), "not measured")
        result.unavailable("bulk over HTTP", "jobs/s", missing, BULK_TARGET)
    notes = sorted({note for r in reps for note in r.notes})
    if notes:
        result.settings["notes"] = "; ".join(notes)
