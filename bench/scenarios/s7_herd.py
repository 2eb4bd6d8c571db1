"""Scenario 7: database work per job and idle chatter as the worker fleet grows (the herd).

For each fleet size, on a PostgreSQL server of its own (pg_stat_statements preloaded, every
log line prefixed with the connection's application_name):

1. idle: with the fleet and the API started and settled, every statement is logged for
   `HERD_IDLE_SEC`; the lines are attributed by application_name to the leader, the other
   workers and the API (every connection of the plan is named "dataloader <purpose>[ <id>]").
2. work: `HERD_TRIGGERS` single HTTP triggers, paced, then the wait until all succeeded.
   Transactions per job come from pg_stat_database (xact_commit + xact_rollback), statements
   per job from pg_stat_statements; both minus the idle rate over the same time, so the
   figures are the work that the jobs cost. Trigger→running comes from dl_jobs.

pg_stat_database is fed by each backend at most once a second and by an idle one within
10 s, so the counters are read only after `STATS_FLUSH_SEC` of quiet.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from app.devserver.embedded_postgres import EmbeddedPostgres, free_port
from app.jobs.leadership import LEADER_LOCK_ID
from bench.context import RunContext
from bench.enqueue import trigger_bytes
from bench.http_load import HttpConnection
from bench.processes import Managed, Processes
from bench.report import ScenarioResult, Target
from bench.scenarios.s3_enqueue import TRIGGER_PATH
from bench.server import BenchServer, create_template, drop_database, fresh_database
from bench.stats import percentile

NUMBER = 7
TITLE = "herd: work per job and idle chatter by fleet size"
FLEET_SIZES = (1, 4, 12, 30)
QUICK_FLEET_SIZES = (1, 4)
HERD_TRIGGERS = 500
QUICK_TRIGGERS = 50
HERD_IDLE_SEC = 20.0
QUICK_IDLE_SEC = 5.0
CONCURRENCY = 4  # per worker: small, so that a fleet of 30 is 30 separate listeners
TRIGGER_PACE_SEC = 0.04  # single triggers below one worker's pace: each meets an idle fleet
SETTLE_SEC = 3.0  # leader elected, pools warm, start-up statements done
STATS_FLUSH_SEC = 11.0
JOBS_TIMEOUT_SEC = 180.0
PREFIX_MARK = "|app="  # log_line_prefix ends with this and the application_name
SERVER_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track_utility": "on",
    "log_line_prefix": f"%m [%p]{PREFIX_MARK}%a| ",
    "max_connections": "500",
}
STATEMENT_LINE = re.compile(r"\|app=(?P<app>[^|]*)\| LOG:  (?:statement|execute [^:]*):")


class HerdFailed(RuntimeError):
    """The fleet did not finish the triggered jobs."""


@dataclass
class FleetFigures:
    """What one fleet size measured."""

    workers: int
    xact_per_job: float = 0.0
    statements_per_job: float = 0.0
    running_p50_ms: float = 0.0
    running_p95_ms: float = 0.0
    idle_per_sec: dict[str, float] = field(default_factory=dict)


async def run(ctx: RunContext, result: ScenarioResult) -> None:
    """Every fleet size in turn, on a server of this scenario's own."""
    quick = ctx.config.quick
    sizes = QUICK_FLEET_SIZES if quick else FLEET_SIZES
    triggers = QUICK_TRIGGERS if quick else HERD_TRIGGERS
    idle_sec = QUICK_IDLE_SEC if quick else HERD_IDLE_SEC
    result.settings = {
        "worker processes": ", ".join(map(str, sizes)),
        "concurrency per worker": CONCURRENCY,
        "batch size": ctx.config.batch_size,
        "single triggers": triggers,
        "trigger pace ms": TRIGGER_PACE_SEC * 1000,
        "idle window s": idle_sec,
        "repetitions": ctx.config.reps,
    }
    with tempfile.TemporaryDirectory(prefix="bench-herd-pg-") as pg_dir:
        postgres = EmbeddedPostgres(
            Path(pg_dir) / "pg", free_port(), extra_settings=dict(SERVER_SETTINGS)
        )
        postgres.start()
        try:
            server = BenchServer(admin_dsn=postgres.url, embedded=True)
            template = await create_template(server)
            try:
                for size in sizes:
                    runs = []
                    for rep in range(ctx.config.reps):
                        figures = await _one_fleet(
                            ctx, server, template, postgres.log_file, size, triggers, idle_sec, rep
                        )
                        runs.append(figures)
                        ctx.progress(f"s7 {size} workers rep {rep + 1}: {figures}")
                    _record(result, size, runs, sizes[0])
            finally:
                await drop_database(server, template)
        finally:
            postgres.stop()


def _record(result: ScenarioResult, size: int, runs: list[FleetFigures], smallest: int) -> None:
    label = f"{size} worker{'s' if size > 1 else ''}"
    base = result.figure(f"transactions per job, {smallest} worker")
    result.add(f"transactions per job, {label}", "xact", [r.xact_per_job for r in runs])
    result.add(f"statements per job, {label}", "stmt", [r.statements_per_job for r in runs])
    latency_target = Target("<", 10) if size == max(FLEET_SIZES) else None
    result.add(
        f"trigger→running p50, {label}", "ms", [r.running_p50_ms for r in runs], latency_target
    )
    result.add(f"trigger→running p95, {label}", "ms", [r.running_p95_ms for r in runs])
    for who in ("leader", "other workers (each)", "API"):
        values = [r.idle_per_sec[who] for r in runs if who in r.idle_per_sec]
        target = Target("<=", 0.5) if who == "other workers (each)" else None
        result.add(f"idle statements/s, {who}, {label}", "stmt/s", values, target)
    if base is not None and base.spread is not None and size != smallest:
        result.add(
            f"transactions per job, {label} / {smallest} worker",
            "x",
            [r.xact_per_job / base.spread.median for r in runs],
            Target("<=", 2),
        )


async def _one_fleet(
    ctx: RunContext,
    server: BenchServer,
    template: str,
    log_file: Path,
    size: int,
    triggers: int,
    idle_sec: float,
    rep: int,
) -> FleetFigures:
    figures = FleetFigures(size)
    async with fresh_database(server, template, "bench_s7") as dsn:
        with ctx.processes(NUMBER, f"{size}w-r{rep}") as processes:
            api = await processes.start_api(dsn, 1)
            workers = [
                processes.start_worker(
                    dsn, f"herd{index}", batch_size=ctx.config.batch_size, concurrency=CONCURRENCY
                )
                for index in range(size)
            ]
            for worker in workers:
                await processes.wait_ready(worker, limit_sec=120)
            await asyncio.sleep(SETTLE_SEC)
            connection = await asyncpg.connect(dsn)
            try:
                await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                figures.idle_per_sec = await _idle(connection, log_file, idle_sec, size)
                await _work(connection, api.host, api.port, triggers, workers, figures)
            finally:
                await connection.close()
    return figures


async def _counters(connection: asyncpg.Connection) -> tuple[float, int, int]:
    """(monotonic now, transactions, statements) of this database."""
    xact = await connection.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    statements = await connection.fetchval(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return time.monotonic(), int(xact), int(statements)


async def _idle(
    connection: asyncpg.Connection, log_file: Path, idle_sec: float, size: int
) -> dict[str, float]:
    """Statements per second while nothing is triggered, by who sent them."""
    await connection.execute("ALTER SYSTEM SET log_statement = 'all'")
    await connection.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(0.5)  # every backend reloads its configuration before its next statement
    start = await asyncio.to_thread(_size, log_file)
    await asyncio.sleep(idle_sec)
    end = await asyncio.to_thread(_size, log_file)
    await connection.execute("ALTER SYSTEM RESET log_statement")
    await connection.execute("SELECT pg_reload_conf()")
    # The leader holds the leader lock on its pgqueuer connection (app.jobs.leadership).
    leader = await connection.fetchval(
        "SELECT substr(a.application_name, length('dataloader pgqueuer ') + 1)"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted"
        " AND ((l.classid::bigint << 32) | l.objid::bigint) = $1"
        " AND a.application_name LIKE 'dataloader pgqueuer %' LIMIT 1",
        LEADER_LOCK_ID,
    )
    text = await asyncio.to_thread(_read_slice, log_file, start, end)
    senders: Counter[str] = Counter()
    for match in STATEMENT_LINE.finditer(text):
        senders[_who(match["app"], leader)] += 1
    others = max(1, size - 1)
    return {
        "leader": senders["leader"] / idle_sec,
        **({"other workers (each)": senders["worker"] / others / idle_sec} if size > 1 else {}),
        "API": senders["API"] / idle_sec,
    }


def _size(path: Path) -> int:
    return path.stat().st_size


def _read_slice(path: Path, start: int, end: int) -> str:
    with path.open("rb") as log:
        log.seek(start)
        return log.read(end - start).decode(errors="replace")


def _who(application_name: str, leader: str | None) -> str:
    if application_name.startswith("dataloader api") or application_name.startswith(
        "dataloader job watch"
    ):
        return "API"
    if not application_name.startswith("dataloader "):
        return "bench"
    if leader is not None and application_name.endswith(f" {leader}"):
        return "leader"
    return "worker"


async def _work(
    connection: asyncpg.Connection,
    host: str,
    port: int,
    triggers: int,
    workers: list[Managed],
    figures: FleetFigures,
) -> None:
    """Paced single triggers; the work they cost, net of the idle rate, and their latency."""
    before_flush = await _counters(connection)
    await asyncio.sleep(STATS_FLUSH_SEC)
    idle_start = await _counters(connection)
    seconds = idle_start[0] - before_flush[0]
    idle_xact_rate = (idle_start[1] - before_flush[1]) / seconds
    idle_stmt_rate = (idle_start[2] - before_flush[2]) / seconds
    async with HttpConnection(host, port) as http:
        for index in range(triggers):
            answer = await http.request("POST", TRIGGER_PATH, trigger_bytes(f"herd-{index}"))
            if not answer.ok:
                raise HerdFailed(f"trigger answered {answer.status}: {answer.body[:200]!r}")
            await asyncio.sleep(TRIGGER_PACE_SEC)
    deadline = time.monotonic() + JOBS_TIMEOUT_SEC
    while await connection.fetchval("SELECT count(*) FROM dl_jobs WHERE status <> 'succeeded'"):
        if time.monotonic() > deadline:
            Processes.check_alive(*workers)
            raise HerdFailed(f"jobs not all succeeded in {JOBS_TIMEOUT_SEC}s")
        await asyncio.sleep(0.05)
    await asyncio.sleep(STATS_FLUSH_SEC)
    done = await _counters(connection)
    seconds = done[0] - idle_start[0]
    figures.xact_per_job = (done[1] - idle_start[1] - idle_xact_rate * seconds) / triggers
    figures.statements_per_job = (done[2] - idle_start[2] - idle_stmt_rate * seconds) / triggers
    rows = await connection.fetch(
        "SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms FROM dl_jobs"
    )
    latencies = [float(row["ms"]) for row in rows]
    figures.running_p50_ms = percentile(latencies, 50)
    figures.running_p95_ms = percentile(latencies, 95)
