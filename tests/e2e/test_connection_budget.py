"""Each process stays within its connection budget under load (docs/connections.md#sizing).

An API process (`python -m app serve`) and three workers (`pgq run`), one of them the
leader, on one database. For a few seconds clients trigger, read and stream jobs while the
workers run jobs that report progress, heartbeat and fail into retries. A sampler counts
each process's connections in pg_stat_activity throughout; no process may exceed the budget
the sizing formula counts on, and every worker reaches it (so the load was real).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
import httpx

from app.jobs.leadership import LEADER_LOCK_ID
from app.settings import load_settings
from tests.support.api_servers import start_api_server, stop_api_server
from tests.support.waiting import wait_until
from tests.support.workers import worker_fleet

WORKER_IDS = ("w1", "w2", "w3")
CLIENTS = 24
STREAMS = 6
LOAD_SEC = 6.0


def budgets() -> tuple[int, int]:
    """(API process, worker) connections the sizing formula counts, at the defaults."""
    defaults = load_settings(database_url="postgresql://u@127.0.0.1:1/db")
    api = defaults.pg_pool_size + defaults.pg_max_overflow + 1  # + the job watch
    worker = defaults.dl_worker_pool_size + 3  # + pgqueuer, lock session, finish writer
    return api, worker


def process_of(name: str) -> str | None:
    """Which process a planned connection belongs to: 'api' or the worker id."""
    if name in ("dataloader api pool", "dataloader job watch"):
        return "api"
    if name.startswith("dataloader "):
        ident = name.rsplit(" ", 1)[-1]
        return ident if ident in WORKER_IDS else None
    return None


class Sampler:
    """The most connections each process held at once, and who led meanwhile."""

    def __init__(self, observer: asyncpg.Connection) -> None:
        self.observer = observer
        self.peak: Counter[str] = Counter()
        self.peak_by_name: dict[str, int] = defaultdict(int)
        self.leaders: set[str] = set()
        self.samples = 0

    async def sample(self) -> None:
        rows = await self.observer.fetch(
            """
            SELECT a.application_name AS name, count(*) AS n,
                   bool_or(l.pid IS NOT NULL) AS leads
            FROM pg_stat_activity a
            LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
                 AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
            WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
            GROUP BY a.application_name
            """,
            LEADER_LOCK_ID,
        )
        now: Counter[str] = Counter()
        for row in rows:
            process = process_of(row["name"])
            if process is None:
                continue
            now[process] += row["n"]
            self.peak_by_name[row["name"]] = max(self.peak_by_name[row["name"]], row["n"])
            if row["leads"]:
                self.leaders.add(process)
        for process, count in now.items():
            self.peak[process] = max(self.peak[process], count)
        self.samples += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample()
            await asyncio.sleep(0.02)


async def client_load(http: httpx.AsyncClient, stop: asyncio.Event, index: int) -> int:
    """Trigger jobs (some failing into a retry) and read them back until `stop`; 5xx seen."""
    errors = 0
    for n in itertools.count():
        if stop.is_set():
            break
        args = {"steps": 3, "sleep": 0.2}
        if n % 4 == 0:
            args.update(fail_at_step=1, fail_attempts=1)
        # Every third job shares a lock_key with other clients' (lock-busy postponements).
        lock_key = f"budget-{index % 5}" if n % 3 == 0 else f"budget-{index}-{n}"
        body = {
            "queue": "etl.default",
            "task": "noop",
            "args": args,
            "lock_key": lock_key,
            "max_attempts": 3,
        }
        created = await http.post("/api/v1/jobs/trigger", json=body)
        errors += created.status_code >= 500
        if created.status_code == 200:
            job = created.json()["job_id"]
            errors += (await http.get(f"/api/v1/jobs/{job}")).status_code >= 500
        errors += (await http.get("/api/v1/jobs", params={"limit": 20})).status_code >= 500
    return errors


async def watch(http: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """A stream client on a job nobody serves, kept open until `stop`."""
    body = {"queue": "etl.unserved", "task": "noop", "args": {}, "lock_key": str(id(stop))}
    created = await http.post("/api/v1/jobs/trigger", json=body)
    assert created.status_code == 200, created.text
    job = created.json()["job_id"]
    async with http.stream("GET", f"/api/v1/jobs/{job}/stream") as stream:

        async def read() -> None:
            async for _ in stream.aiter_lines():
                pass

        reading = asyncio.create_task(read())
        await stop.wait()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def test_each_process_stays_within_its_connection_budget_under_load(
    project_root: Path, database_dsn: str, tmp_path: Path
) -> None:
    api_budget, worker_budget = budgets()
    observer = await asyncpg.connect(database_dsn)
    server = await start_api_server(database_dsn, tmp_path / "api.log")
    try:
        with worker_fleet(project_root, database_dsn, tmp_path / "workers") as fleet:
            for ident in WORKER_IDS:
                await fleet.start_ready(ident, queues={"etl.default": 6})
            sampler = Sampler(observer)

            async def someone_leads() -> bool:
                await sampler.sample()
                return bool(sampler.leaders)

            await wait_until(someone_leads, timeout=30, what="a leader among the workers")
            stop = asyncio.Event()
            limits = httpx.Limits(max_connections=CLIENTS + STREAMS + 4)
            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=60, limits=limits
            ) as http:
                sampling = asyncio.create_task(sampler.run(stop))
                streams = [asyncio.create_task(watch(http, stop)) for _ in range(STREAMS)]
                clients = [asyncio.create_task(client_load(http, stop, i)) for i in range(CLIENTS)]
                await asyncio.sleep(LOAD_SEC)
                stop.set()
                server_errors = sum(await asyncio.gather(*clients))
                await asyncio.gather(*streams, sampling)
            running = await observer.fetchval(
                "SELECT count(*) FROM dl_jobs WHERE status IN ('running', 'succeeded')"
            )
    finally:
        stop_api_server(server)
        await observer.close()

    print(
        f"\nconnection peaks over {sampler.samples} samples: {dict(sampler.peak)}"
        f"\nby name: {dict(sampler.peak_by_name)}\nleader(s): {sorted(sampler.leaders)}"
    )
    assert server_errors == 0
    assert running > 0
    assert sampler.leaders
    assert sampler.leaders <= set(WORKER_IDS)
    assert sampler.peak["api"] <= api_budget
    assert sampler.peak["api"] >= 2  # the pool was used beyond one connection
    # Every worker, the leader included, uses its whole budget and never more.
    assert {ident: sampler.peak[ident] for ident in WORKER_IDS} == dict.fromkeys(
        WORKER_IDS, worker_budget
    )
