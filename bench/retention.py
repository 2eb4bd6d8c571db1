"""Retention under a large backlog: `python -m bench.retention [--jobs 1000000]`.

Builds a history of finished jobs (3 events each, see bench.history) with pgqueuer_log
rows (3 per job) and pgqueuer_statistics buckets (one per job, as a low-rate queue
leaves them), all older than the retention, then runs `Retention.run_once()` until
nothing is left, timing every batch. A batch is one transaction, so its time from BEGIN
to COMMIT bounds how long any row lock it took was held. Prints one JSON report.
Uses DATABASE_URL's server (which must allow CREATE DATABASE) or a throw-away one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import jobs as job_rows
from app.db import pgqueuer_tables
from app.db.engine import create_engine, create_session_factory
from app.settings import load_settings
from bench.history import build_history
from bench.server import bench_server, create_template, drop_database, fresh_database
from bench.stats import percentile
from worker.maintenance.retention import Retention, RetentionConfig

# pgqueuer's view of each history job: queued, picked, successful, a second apart.
_LOG = """
INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint, aggregated)
SELECT j.created_at + s.offset_sec * interval '1 second', j.pgq_job_id, s.status::pgqueuer_status,
       100, 'bench', true
FROM dl_jobs j
CROSS JOIN (VALUES (0, 'queued'), (1, 'picked'), (2, 'successful')) AS s(offset_sec, status)
"""
# A low-rate queue leaves about one statistics bucket per job (one per second at most).
_STATISTICS = """
INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)
SELECT now() - interval '28 days' + g * interval '2 seconds', 1, 100, 'successful', 'bench'
FROM generate_series(1, (SELECT count(*) FROM dl_jobs)) AS g
"""


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries the report)."""
    print(f"[retention] {message}", file=sys.stderr, flush=True)


async def add_pgqueuer_history(dsn: str) -> None:
    """pgqueuer_log and pgqueuer_statistics rows matching the jobs, then settle them."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(_LOG)
        await connection.execute(_STATISTICS)
        for name in ("pgqueuer_log", "pgqueuer_statistics"):
            await connection.execute(f"VACUUM ANALYZE {name}")
        await checkpoint(connection)
    finally:
        await connection.close()


async def checkpoint(connection: asyncpg.Connection) -> None:
    """CHECKPOINT, so the measurement does not pay for the load; skipped for a plain user."""
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await connection.execute("CHECKPOINT")


async def counts(dsn: str) -> dict[str, int]:
    """Rows in each table retention prunes."""
    connection = await asyncpg.connect(dsn)
    try:
        tables = ("dl_jobs", "dl_job_events", "pgqueuer_log", "pgqueuer_statistics")
        return {t: int(await connection.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}
    finally:
        await connection.close()


def summary(seconds: list[float]) -> dict[str, float]:
    """Median, p99 and max of some durations, in milliseconds."""
    if not seconds:
        return {}
    ms = sorted(s * 1000 for s in seconds)
    return {
        "batches": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(ms[-1], 1),
    }


async def time_batches(
    sessions: async_sessionmaker[AsyncSession],
    batch: Callable[[AsyncSession], Awaitable[int]],
    limit: int,
) -> list[float]:
    """Run one kind of batch until a short one, timing each transaction."""
    times: list[float] = []
    while True:
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            deleted = await batch(session)
        times.append(time.perf_counter() - started)
        if deleted < limit:
            return times


async def idle_passes(service: Retention, passes: int = 20) -> dict[str, float]:
    """Time `passes` passes that find nothing to delete."""
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        result = await service.run_once()
        times.append(time.perf_counter() - started)
        assert result.deleted == 0
        assert not result.more_remain
    figures = summary(times)
    figures["passes"] = figures.pop("batches")
    return figures


async def vacuum(dsn: str) -> None:
    """VACUUM the pruned tables."""
    connection = await asyncpg.connect(dsn)
    try:
        for name in ("dl_jobs", "dl_job_events", "pgqueuer_log", "pgqueuer_statistics"):
            await connection.execute(f"VACUUM {name}")
    finally:
        await connection.close()


async def measure(dsn: str, batch_size: int, max_batches: int) -> dict[str, Any]:
    """Drain the whole history: first per kind of batch, then (after a rebuild) by passes."""
    settings = load_settings(database_url=dsn)
    engine = create_engine(settings, pool_size=2)
    sessions = create_session_factory(engine)
    retention = timedelta(seconds=1)  # every history row is older than this
    await asyncio.sleep(3)  # history jobs finish up to 2 s after the build's clock
    report: dict[str, Any] = {"before": await counts(dsn)}
    try:
        # 1. Each kind alone, batch after batch: time per batch.
        started = time.perf_counter()
        job_events: list[int] = []

        async def jobs_batch(session: AsyncSession) -> int:
            batch = await job_rows.delete_finished(session, retention, batch_size)
            job_events.append(batch.events)
            return batch.jobs

        per_kind = {
            "jobs (with their events)": await time_batches(sessions, jobs_batch, batch_size),
            "pgqueuer_log": await time_batches(
                sessions,
                lambda s: pgqueuer_tables.delete_old_pgqueuer_log(s, retention, batch_size),
                batch_size,
            ),
            "pgqueuer_statistics": await time_batches(
                sessions,
                lambda s: pgqueuer_tables.delete_old_pgqueuer_statistics(s, retention, batch_size),
                batch_size,
            ),
        }
        report["per_batch"] = {name: summary(times) for name, times in per_kind.items()}
        report["events_per_job_batch"] = max(job_events, default=0)
        report["drain_sec"] = round(time.perf_counter() - started, 1)
        report["after"] = await counts(dsn)
        # 2. What a pass costs once nothing is left: at once (the indexes still hold the
        # dead entries), and after the VACUUM autovacuum would soon run.
        service = Retention(
            sessions,
            RetentionConfig(retention, batch_size=batch_size, max_batches_per_pass=max_batches),
        )
        report["idle_pass_after_drain"] = await idle_passes(service)
        await vacuum(dsn)
        report["idle_pass_after_vacuum"] = await idle_passes(service)
    finally:
        await engine.dispose()
    return report


async def measure_passes(dsn: str, batch_size: int, max_batches: int) -> dict[str, Any]:
    """Drain the history with `run_once()` as the leader would, pass after pass."""
    settings = load_settings(database_url=dsn)
    engine = create_engine(settings, pool_size=2)
    config = RetentionConfig(
        timedelta(seconds=1), batch_size=batch_size, max_batches_per_pass=max_batches
    )
    service = Retention(create_session_factory(engine), config)
    await asyncio.sleep(3)
    passes: list[float] = []
    longest = 0.0
    try:
        while True:
            started = time.perf_counter()
            result = await service.run_once()
            passes.append(time.perf_counter() - started)
            longest = max(longest, result.longest_batch_sec)
            if not result.more_remain:
                break
    finally:
        await engine.dispose()
    return {
        "passes": len(passes),
        "pass_p50_ms": round(percentile(sorted(p * 1000 for p in passes), 50), 1),
        "pass_max_ms": round(max(passes) * 1000, 1),
        "longest_batch_ms": round(longest * 1000, 1),
        "total_sec": round(sum(passes), 1),
        "after": await counts(dsn),
    }


async def main(args: argparse.Namespace) -> None:
    """Build the history once into a template, then measure on copies of it."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-retention-") as workdir,
        bench_server(Path(workdir)) as server,
    ):
        template = await create_template(server)
        try:
            async with fresh_database(server, template, "bench_ret_hist") as dsn:
                started = time.perf_counter()
                await build_history(dsn, args.jobs, progress)
                await add_pgqueuer_history(dsn)
                progress(f"history built in {time.perf_counter() - started:.0f} s")
                history = dsn.rsplit("/", 1)[1]
                copy = await asyncpg.connect(server.admin_dsn)
                try:  # a template of the history, so both measurements start equal
                    await copy.execute(f'CREATE DATABASE "{history}_t" TEMPLATE "{history}"')
                finally:
                    await copy.close()
                report: dict[str, Any] = {
                    "jobs": args.jobs,
                    "batch_size": args.batch_size,
                    "max_batches_per_pass": args.max_batches,
                }
                progress("timing each kind of batch")
                report["by_kind"] = await measure(dsn, args.batch_size, args.max_batches)
            try:
                async with fresh_database(server, f"{history}_t", "bench_ret_pass") as dsn:
                    await _settle(dsn)
                    progress("draining with run_once() passes")
                    report["by_pass"] = await measure_passes(dsn, args.batch_size, args.max_batches)
            finally:
                await drop_database(server, f"{history}_t")
        finally:
            await drop_database(server, template)
    print(json.dumps(report, indent=2))


async def _settle(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await checkpoint(connection)
    finally:
        await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--max-batches", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
