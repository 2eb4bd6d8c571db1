"""Enqueue N zero-sleep noop jobs, drain them with W `pgq run` workers, print jobs/s.

Usage: python -m bench.drain [--jobs 1000] [--workers 2] [--concurrency 8]
Uses DATABASE_URL when set, else a throw-away embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from app.db.engine import create_engine, create_session_factory
from app.db.migrate import PROJECT_ROOT, upgrade_to_head
from app.devserver.embedded_postgres import EmbeddedPostgres, free_port
from app.jobs.enqueue import enqueue_in_session
from app.jobs.spec import JobSpec
from app.pipelines.registry import load_pipelines
from app.settings import load_settings


async def drain(dsn: str, jobs: int, workers: int, concurrency: int) -> None:
    """Enqueue, start the workers, wait for every job to succeed, print the rate."""
    settings = load_settings(database_url=dsn)
    await asyncio.to_thread(upgrade_to_head, settings.sqlalchemy_url, settings.pg_schema_queue)
    load_pipelines()
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    started = time.perf_counter()
    async with sessions() as session, session.begin():
        for index in range(jobs):
            spec = JobSpec(queue="bench", task="noop", lock_key=f"bench-{index}", args={})
            await enqueue_in_session(session, spec, settings)
    enqueue_sec = time.perf_counter() - started
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "WORKERS_JSON": f'[{{"queue":"bench","concurrency":{concurrency}}}]',
    }
    processes = [
        subprocess.Popen(  # noqa: ASYNC220 - starting a process does not wait for it
            [sys.executable, "-m", "pgqueuer", "run", "worker.main:factory"],
            cwd=PROJECT_ROOT,
            env={**env, "WORKER_ID": f"bench-{n}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(workers)
    ]
    connection = await asyncpg.connect(dsn)
    try:
        first_start = None
        while True:
            row = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'succeeded') AS done,"
                " min(started_at) AS first, max(finished_at) AS last FROM dl_jobs"
            )
            if first_start is None and row["first"] is not None:
                first_start = row["first"]
            if row["done"] == jobs:
                break
            await asyncio.sleep(0.2)
        span = (row["last"] - row["first"]).total_seconds()
    finally:
        await connection.close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        await engine.dispose()
    rate = jobs / enqueue_sec
    print(f"enqueue: {jobs} jobs in {enqueue_sec:.2f}s ({rate:,.0f} jobs/s, one transaction)")
    print(
        f"drain: {jobs} jobs, {workers} workers x concurrency {concurrency}: "
        f"{span:.2f}s first start to last finish ({jobs / span:,.0f} jobs/s)"
    )


def main() -> None:
    """Parse arguments; start an embedded server unless DATABASE_URL is set."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL")
    if dsn:
        asyncio.run(drain(dsn, args.jobs, args.workers, args.concurrency))
        return
    with tempfile.TemporaryDirectory() as folder:
        postgres = EmbeddedPostgres(Path(folder) / "pg", free_port())
        postgres.start()
        try:
            asyncio.run(drain(postgres.url, args.jobs, args.workers, args.concurrency))
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
