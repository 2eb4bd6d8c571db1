"""PostgreSQL restarted (fast, then immediate shutdown) while 2,000 jobs are triggered and run.

The jobs arrive over HTTP while the database goes away. A client that gets a 503 (or no
answer) sends the same batch again with the same idempotency keys, as docs/api.md tells
clients to. Nothing may answer 500; the API and the workers must come back without being
restarted, and every job must end succeeded, once, with no overlaps.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.faults.checks import check_jobs, figures_line, report, wait_drained
from tests.support.api_servers import ApiServer, start_api_server, stop_api_server
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.waiting import wait_until
from tests.support.workers import E2E_PIPELINE_MODULES, WorkerFleet, worker_fleet

QUEUE = "etl.restart"
JOBS = 2000
BATCH = 25  # jobs per bulk trigger
TRIGGER_PAUSE_SEC = 0.1  # between batches: the load goes on for ~8 s, outage included
LOCK_KEYS = 100
WORKERS = 3
CONCURRENCY = 24  # fleet-wide for the queue (pgqueuer enforces it in SQL)
RUN_ARGS = {"steps": 2, "sleep": 0.05}
DOWN_SEC = 3.0  # how long the database stays down
RESTART_AFTER_JOBS = 500  # restart once this many jobs exist
PIPELINES_ENV = {"DL_PIPELINE_MODULES": json.dumps([E2E_PIPELINE_MODULES])}
WORKER_ENV = {"DL_CLAIM_BACKOFF_SEC": "0.1"}


@dataclass
class HttpLoad:
    """Triggers JOBS jobs in batches, resending a batch the API could not take."""

    http: httpx.AsyncClient
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    server_errors: list[str] = field(default_factory=list)  # any 5xx but 503
    job_ids: set[str] = field(default_factory=set)

    async def trigger_all(self) -> None:
        for first in range(0, JOBS, BATCH):
            await self._trigger_batch(
                [
                    {
                        "queue": QUEUE,
                        "task": "test.record",
                        "args": RUN_ARGS,
                        "lock_key": f"key-{index % LOCK_KEYS}",
                        "idempotency_key": f"load-{index}",
                    }
                    for index in range(first, min(first + BATCH, JOBS))
                ]
            )
            await asyncio.sleep(TRIGGER_PAUSE_SEC)

    async def _trigger_batch(self, jobs: list[dict[str, object]]) -> None:
        while True:
            try:
                answer = await self.http.post("/api/v1/jobs/trigger/bulk", json={"jobs": jobs})
            except httpx.TransportError:
                self.transport_errors += 1
                await asyncio.sleep(0.2)
                continue
            self.statuses[answer.status_code] += 1
            if answer.status_code == 200:
                self.job_ids.update(job["job_id"] for job in answer.json()["jobs"])
                return
            if answer.status_code != 503:
                self.server_errors.append(f"{answer.status_code} {answer.text[:300]}")
                return
            await asyncio.sleep(0.2)


@dataclass
class Prober:
    """Reads /ready and a job listing every 100 ms and counts the answers."""

    http: httpx.AsyncClient
    ready: Counter[int] = field(default_factory=Counter)
    listing: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for path, counts in (("/ready", self.ready), ("/api/v1/jobs?limit=5", self.listing)):
                try:
                    answer = await self.http.get(path)
                except httpx.TransportError:
                    counts[0] += 1
                    continue
                counts[answer.status_code] += 1
                if answer.status_code >= 500 and answer.status_code != 503:
                    self.bad.append(f"GET {path}: {answer.status_code} {answer.text[:300]}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[PrivatePostgres]:
    async with private_postgres(tmp_path) as postgres:
        yield postgres


@pytest.fixture
async def restart_db(restartable: PrivatePostgres) -> AsyncIterator[JobsDb]:
    async with restartable.jobs_db() as jobs_db:
        yield jobs_db


@pytest.fixture
async def restart_api(restartable: PrivatePostgres, tmp_path: Path) -> AsyncIterator[ApiServer]:
    server = await start_api_server(restartable.dsn, tmp_path / "api.log", PIPELINES_ENV)
    yield server
    stop_api_server(server)


async def _restart(postgres: PrivatePostgres, mode: str) -> tuple[float, float]:
    """Stop the server in `mode`, keep it down DOWN_SEC, start it; (stopped_at, up_at) monotonic."""
    await asyncio.to_thread(postgres.stop, mode)
    stopped = time.monotonic()
    await asyncio.sleep(DOWN_SEC)
    await asyncio.to_thread(postgres.start)
    return stopped, time.monotonic()


@pytest.mark.timeout(420)
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restart_under_load(
    mode: str,
    restartable: PrivatePostgres,
    restart_db: JobsDb,
    restart_api: ApiServer,
    project_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs_db = restart_db
    await jobs_db.execute(RUN_LOG_DDL)
    with worker_fleet(project_root, restartable.dsn, tmp_path / "workers") as fleet:
        await _start_workers(fleet)
        async with (
            httpx.AsyncClient(base_url=restart_api.base_url, timeout=30) as load_http,
            httpx.AsyncClient(base_url=restart_api.base_url, timeout=5) as probe_http,
        ):
            load = HttpLoad(load_http)
            prober = Prober(probe_http)
            stop_probing = asyncio.Event()
            probing = asyncio.create_task(prober.run(stop_probing))
            loading = asyncio.create_task(load.trigger_all())
            await wait_until(
                lambda: len(load.job_ids) >= RESTART_AFTER_JOBS,
                timeout=60,
                what=f"{RESTART_AFTER_JOBS} jobs triggered",
            )
            running = await jobs_db.scalar("SELECT count(*) FROM dl_jobs WHERE status='running'")
            stopped_at, up_at = await _restart(restartable, mode)
            await asyncio.wait_for(loading, timeout=120)
            await wait_drained(jobs_db, JOBS, timeout=180, diagnostics=fleet.diagnostics)
            drained_at = time.monotonic()
            stop_probing.set()
            await probing

        first_finish_after = await jobs_db.scalar(
            "SELECT extract(epoch FROM min(finished_at) - :up) FROM dl_jobs"
            " WHERE finished_at > :up",
            up=await _database_time(jobs_db, up_at),
        )
        outcome = await check_jobs(jobs_db, {uuid.UUID(job_id) for job_id in load.job_ids})
        expected_ids = len(load.job_ids)
        events = {
            row["event"]: row["n"]
            for row in await jobs_db.fetch(
                "SELECT event, count(*) AS n FROM dl_job_events"
                " WHERE event IN ('interrupted', 'lease_expired', 'retry_scheduled')"
                " GROUP BY event"
            )
        }
        restarts_logged = sum(
            worker.log().count("Attempting to restart") for worker in fleet.workers
        )
        report(
            figures_line(
                f"postgres_restart_{mode}",
                outcome,
                recovery_sec=float(first_finish_after) if first_finish_after else None,
                running_at_fault=running,
                down_sec=f"{up_at - stopped_at:.1f}",
                drained_after_up_sec=f"{drained_at - up_at:.1f}",
                http_statuses=dict(sorted(load.statuses.items())),
                http_no_answer=load.transport_errors,
                ready_statuses=dict(sorted(prober.ready.items())),
                listing_statuses=dict(sorted(prober.listing.items())),
                worker_restarts=restarts_logged,
                interrupted=events.get("interrupted", 0),
                leases_expired=events.get("lease_expired", 0),
                retries=events.get("retry_scheduled", 0),
            ),
            capsys,
        )
        server_errors = [*load.server_errors, *prober.bad]
        assert not server_errors, "the API answered a 5xx other than 503"
        outcome.assert_clean(fleet.diagnostics())
        assert expected_ids == JOBS, "each idempotency key made one job"
        assert prober.ready[503] > 0, "the outage was seen as 503 by /ready"
        assert all(worker.alive() for worker in fleet.workers), fleet.diagnostics()
        assert restart_api.process.poll() is None, restart_api.log_tail()


async def _start_workers(fleet: WorkerFleet) -> None:
    for _ in range(WORKERS):
        fleet.start(queues={QUEUE: CONCURRENCY}, env=WORKER_ENV)
    for worker in fleet.workers:
        await fleet.wait_ready(worker)


async def _database_time(jobs_db: JobsDb, monotonic_at: float) -> datetime:
    """The database clock at a moment measured on this process's monotonic clock."""
    now = await jobs_db.now()
    return now - timedelta(seconds=time.monotonic() - monotonic_at)
