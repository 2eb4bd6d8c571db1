"""A fleet behind PgBouncer on a server with 100 connections, restarted under load.

30 workers and 2 API processes share one PostgreSQL with `max_connections=100`, as a managed
database would give them: DATABASE_URL goes through PgBouncer in transaction mode (started
from the documented configuration, its pool size included), DATABASE_DIRECT_URL to the
server. 2,000 jobs over 20 lock_keys arrive over HTTP, spread over both APIs, and PostgreSQL
restarts (fast shutdown) in the middle. A client that gets a 503 (or no answer) sends the
same batch again with the same idempotency keys.

Every job must end succeeded, each run once, no two of a lock_key at once; no job may stay
`running` with its lease expired for longer than a reaper period once the server is back,
and the APIs answer nothing in the 5xx range but 503.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.faults.checks import check_jobs, figures_line, report, wait_drained
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb
from tests.support.pgbouncer import PgBouncer, pgbouncer_in_front
from tests.support.pooled_service import PooledService, pooled_service
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.waiting import wait_until
from tests.support.workers import E2E_PIPELINE_MODULES

QUEUE = "etl.pooled-fleet"
JOBS = 2000
LOCK_KEYS = 20
BATCH = 25  # jobs per bulk trigger
TRIGGER_PAUSE_SEC = 0.05  # between one client's batches
CLIENTS = 4  # concurrent HTTP clients, taking turns over the APIs
API_PROCESSES = 2
WORKERS = 30
# Fleet-wide for the queue (pgqueuer enforces it in SQL): one job per lock_key at a time is
# all that can run anyway, and each worker's share stays small.
CONCURRENCY = LOCK_KEYS
MAX_CONNECTIONS = 100
RUN_ARGS = {"steps": 1, "sleep": 0.05}
LEASE_TTL_SEC = 10  # short, so a job whose runner lost it is reaped within the test
DOWN_SEC = 3.0
RESTART_AFTER_JOBS = 700
REAPER_PERIOD_SEC = 0.5  # FAST_ENV's DL_REAPER_PERIOD_SEC
SAMPLE_SEC = 0.5  # how often pg_stat_activity and stranded jobs are looked at
PIPELINES_ENV = {"DL_PIPELINE_MODULES": json.dumps([E2E_PIPELINE_MODULES])}
WORKER_ENV = {"DL_CLAIM_BACKOFF_SEC": "0.1", "DL_REAPER_PERIOD_SEC": str(REAPER_PERIOD_SEC)}
WORKER_START_TIMEOUT_SEC = 180.0  # 30 interpreters starting at once on two shared cores


@dataclass
class HttpLoad:
    """Triggers JOBS jobs in batches over the APIs, resending a batch that got a 503."""

    clients: list[httpx.AsyncClient]
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    server_errors: list[str] = field(default_factory=list)  # any 5xx but 503
    job_ids: set[str] = field(default_factory=set)
    started_at: float = 0.0
    finished_at: float = 0.0

    async def trigger_all(self) -> None:
        self.started_at = time.monotonic()
        batches = [range(first, min(first + BATCH, JOBS)) for first in range(0, JOBS, BATCH)]
        turns = itertools.cycle(self.clients)
        lanes: list[list[tuple[httpx.AsyncClient, range]]] = [[] for _ in range(CLIENTS)]
        for index, batch in enumerate(batches):
            lanes[index % CLIENTS].append((next(turns), batch))
        await asyncio.gather(*(self._lane(lane) for lane in lanes))
        self.finished_at = time.monotonic()

    async def _lane(self, work: list[tuple[httpx.AsyncClient, range]]) -> None:
        for client, batch in work:
            await self._trigger_batch(client, batch)
            await asyncio.sleep(TRIGGER_PAUSE_SEC)

    async def _trigger_batch(self, client: httpx.AsyncClient, batch: range) -> None:
        jobs = [
            {
                "queue": QUEUE,
                "task": "test.record",
                "args": RUN_ARGS,
                "lock_key": f"key-{index % LOCK_KEYS}",
                "idempotency_key": f"fleet-{index}",
                "lease_ttl_sec": LEASE_TTL_SEC,
            }
            for index in batch
        ]
        while True:
            try:
                answer = await client.post("/api/v1/jobs/trigger/bulk", json={"jobs": jobs})
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
class Watch:
    """Samples the server: connections per purpose at the peak, and stranded running jobs."""

    jobs_db: JobsDb
    bouncer: PgBouncer
    peak_total: int = 0
    peak_by_purpose: dict[str, int] = field(default_factory=dict)
    stranded_max: int = 0
    stranded_examples: list[str] = field(default_factory=list)
    watch_stranded_from: float | None = None  # monotonic; set once the server is back
    # PgBouncer's side: clients queued for a server connection, and the longest wait.
    pool_waiting_max: int = 0
    pool_wait_max_sec: float = 0.0
    errors: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._sample_pool()
                await self._sample()
            except Exception:  # the server is down or restarting: nothing to see now
                self.errors += 1
            await asyncio.sleep(SAMPLE_SEC)

    async def _sample_pool(self) -> None:
        for pool in await self.bouncer.show("POOLS"):
            if pool["database"] == "pgbouncer":
                continue
            self.pool_waiting_max = max(self.pool_waiting_max, int(pool["cl_waiting"]))
            wait = int(pool["maxwait"]) + int(pool["maxwait_us"]) / 1e6
            self.pool_wait_max_sec = max(self.pool_wait_max_sec, wait)

    async def _sample(self) -> None:
        rows = await self.jobs_db.fetch(
            "SELECT application_name FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        if len(rows) > self.peak_total:
            self.peak_total = len(rows)
            self.peak_by_purpose = dict(Counter(_purpose(row["application_name"]) for row in rows))
        if self.watch_stranded_from is None or time.monotonic() < self.watch_stranded_from:
            return
        stranded = await self.jobs_db.fetch(
            "SELECT job_id, worker_id, lease_expires_at FROM dl_jobs WHERE status = 'running'"
            " AND lease_expires_at < now() - make_interval(secs => :grace)",
            grace=REAPER_PERIOD_SEC,
        )
        if len(stranded) > self.stranded_max:
            self.stranded_max = len(stranded)
            self.stranded_examples = [
                f"{row['job_id']} on {row['worker_id']}, lease expired {row['lease_expires_at']}"
                for row in stranded[:5]
            ]


async def _transactions(jobs_db: JobsDb) -> int:
    """Transactions the database has seen (committed or rolled back), from its statistics."""
    count = await jobs_db.scalar(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    return int(count)


def _purpose(name: str | None) -> str:
    """`dataloader lock session w7` -> `lock session`; the test's own and others as they are."""
    if not name:
        return "(unnamed)"
    for purpose in ("api pool", "job watch", "pgqueuer", "lock session", "finish writer"):
        if name.startswith(f"dataloader {purpose}"):
            return purpose
    if name.startswith("dataloader worker pool"):
        return "worker pool"
    return name


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[PrivatePostgres]:
    async with private_postgres(
        tmp_path, settings={"max_connections": str(MAX_CONNECTIONS)}
    ) as postgres:
        yield postgres


@pytest.fixture
async def bouncer(server: PrivatePostgres, tmp_path: Path) -> AsyncIterator[PgBouncer]:
    # The documented pool size: the page's sizing for 30 workers is what is tried here.
    async with pgbouncer_in_front(server.dsn, tmp_path / "pgbouncer") as running:
        yield running


@pytest.fixture
async def service(
    server: PrivatePostgres, bouncer: PgBouncer, tmp_path: Path
) -> AsyncIterator[PooledService]:
    async with pooled_service(
        bouncer,
        server.dsn,
        tmp_path / "service",
        api_processes=API_PROCESSES,
        api_env=PIPELINES_ENV,
        worker_env=WORKER_ENV,
    ) as running:
        yield running


@pytest.mark.timeout(600)
async def test_pooled_fleet_of_30_survives_a_restart_behind_pgbouncer(
    server: PrivatePostgres,
    service: PooledService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs_db = service.jobs_db
    await jobs_db.execute(RUN_LOG_DDL)
    fleet_started = time.monotonic()
    for index in range(WORKERS):
        service.fleet.start(f"f{index + 1}", queues={QUEUE: CONCURRENCY})
    for worker in service.fleet.workers:
        await service.fleet.wait_ready(worker, timeout=WORKER_START_TIMEOUT_SEC)
    fleet_ready_sec = time.monotonic() - fleet_started
    transactions_before = await _transactions(jobs_db)

    clients = [httpx.AsyncClient(base_url=api.base_url, timeout=30) for api in service.apis]
    try:
        load = HttpLoad(clients)
        watch = Watch(jobs_db, service.bouncer)
        stop_watching = asyncio.Event()
        watching = asyncio.create_task(watch.run(stop_watching))
        loading = asyncio.create_task(load.trigger_all())
        await wait_until(
            lambda: len(load.job_ids) >= RESTART_AFTER_JOBS or loading.done(),
            timeout=120,
            what=f"{RESTART_AFTER_JOBS} jobs triggered",
            diagnostics=service.diagnostics(),
        )
        running_at_fault = await jobs_db.scalar(
            "SELECT count(*) FROM dl_jobs WHERE status = 'running'"
        )
        await asyncio.to_thread(server.stop, "fast")
        stopped_at = time.monotonic()
        await asyncio.sleep(DOWN_SEC)  # holding the outage for a set time
        await asyncio.to_thread(server.start)
        up_at = time.monotonic()
        watch.watch_stranded_from = up_at + REAPER_PERIOD_SEC
        await asyncio.wait_for(loading, timeout=180)
        await wait_drained(jobs_db, JOBS, timeout=240, diagnostics=service.diagnostics())
        drained_at = time.monotonic()
        stop_watching.set()
        await watching
    finally:
        for client in clients:
            await client.aclose()

    transactions = await _transactions(jobs_db) - transactions_before
    outcome = await check_jobs(jobs_db, {uuid.UUID(job_id) for job_id in load.job_ids})
    runs_per_job = await jobs_db.fetch(
        "SELECT count(*) AS n FROM e2e_runs WHERE finished_at IS NOT NULL AND stopped_at IS NULL"
        " GROUP BY job_id HAVING count(*) > 1"
    )
    events = {
        row["event"]: row["n"]
        for row in await jobs_db.fetch(
            "SELECT event, count(*) AS n FROM dl_job_events"
            " WHERE event IN ('interrupted', 'lease_expired', 'retry_scheduled')"
            " GROUP BY event"
        )
    }
    report(
        figures_line(
            "pooled_fleet_restart",
            outcome,
            recovery_sec=None,
            workers=WORKERS,
            apis=API_PROCESSES,
            max_connections=MAX_CONNECTIONS,
            fleet_ready_sec=f"{fleet_ready_sec:.1f}",
            trigger_sec=f"{load.finished_at - load.started_at:.1f}",
            running_at_fault=running_at_fault,
            down_sec=f"{up_at - stopped_at:.1f}",
            drained_after_up_sec=f"{drained_at - up_at:.1f}",
            jobs_per_sec=f"{JOBS / (drained_at - load.started_at):.1f}",
            # Kept across the fast shutdown (PostgreSQL writes its statistics out then).
            transactions_per_job=f"{transactions / JOBS:.1f}",
            http_statuses=dict(sorted(load.statuses.items())),
            http_503=load.statuses[503],
            http_no_answer=load.transport_errors,
            peak_connections=watch.peak_total,
            peak_by_purpose=dict(sorted(watch.peak_by_purpose.items())),
            pooler_waiting_max=watch.pool_waiting_max,
            pooler_wait_max_sec=f"{watch.pool_wait_max_sec:.2f}",
            stranded_running_max=watch.stranded_max,
            interrupted=events.get("interrupted", 0),
            leases_expired=events.get("lease_expired", 0),
            retries=events.get("retry_scheduled", 0),
        ),
        capsys,
    )
    assert not load.server_errors, f"the APIs answered a 5xx other than 503: {load.server_errors}"
    assert len(load.job_ids) == JOBS, "each idempotency key made one job"
    outcome.assert_clean(service.diagnostics()())
    assert runs_per_job == [], "a job's body ran to its end more than once"
    assert watch.stranded_max == 0, watch.stranded_examples
    assert all(worker.alive() for worker in service.fleet.workers), service.fleet.diagnostics()
    assert all(api.process.poll() is None for api in service.apis), service.api.log_tail()
