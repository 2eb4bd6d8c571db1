"""Every connection an API process and a worker open carries a name from the connection plan.

The worker is a real `pgq run` process; the API runs under uvicorn in the test's own loop.
With a job run to its end and a stream client watching another, each purpose of the plan is
connected; pg_stat_activity then shows no connection on the database without a planned name.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from sqlalchemy import text

from app.asgi import create_app
from app.db import connections
from app.devserver.embedded_postgres import free_port
from app.settings import Settings
from tests.support.waiting import wait_until
from tests.support.workers import worker_fleet

WORKER_ID = "w1"
# One of each direct connection: the stream's listener and the worker's three (the leader
# lock lives on pgqueuer's).
DIRECT = {
    "dataloader job watch",
    f"dataloader lock session {WORKER_ID}",
    f"dataloader finish writer {WORKER_ID}",
    f"dataloader pgqueuer {WORKER_ID}",
}
POOLED = {"dataloader api pool", f"dataloader worker pool {WORKER_ID}"}


@asynccontextmanager
async def api_serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the test's database, served by uvicorn in this loop, and a client for it."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), timeout=20, what="uvicorn start")
    assert not task.done(), task.exception()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def trigger(http: httpx.AsyncClient, queue: str, args: dict[str, Any]) -> str:
    """A noop job on `queue`; its id."""
    body = {"queue": queue, "task": "noop", "args": args, "lock_key": f"k-{uuid.uuid4()}"}
    response = await http.post("/api/v1/jobs/trigger", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


async def job_status(http: httpx.AsyncClient, job_id: str) -> str:
    """The job's status as the API shows it."""
    response = await http.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def connection_names(observer: asyncpg.Connection) -> list[str]:
    """application_name of every other client connection on this database."""
    rows = await observer.fetch(
        "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    return sorted(row["application_name"] for row in rows)


async def test_connection_plan_names_every_connection_of_an_api_and_a_worker(
    project_root: Path, database_dsn: str, settings: Settings, tmp_path: Path
) -> None:
    observer = await asyncpg.connect(database_dsn)
    try:
        with worker_fleet(project_root, database_dsn, tmp_path / "workers") as fleet:
            await fleet.start_ready(WORKER_ID)
            async with api_serving(settings) as http:
                # Runs long enough for heartbeats, which the worker's pool writes.
                ran = await trigger(http, "etl.default", {"steps": 3, "sleep": 0.5})
                watched = await trigger(http, "etl.unserved", {})  # no worker: stays queued
                async with http.stream("GET", f"/api/v1/jobs/{watched}/stream") as stream:
                    lines = stream.aiter_lines()
                    async for line in lines:  # the first event: the stream is subscribed
                        if line.startswith("data:"):
                            assert json.loads(line.removeprefix("data:"))["status"] == "queued"
                            break

                    async def ran_to_success() -> bool:
                        return await job_status(http, ran) == "succeeded"

                    await wait_until(
                        ran_to_success,
                        timeout=30,
                        what="the worker's job to succeed",
                        diagnostics=fleet.diagnostics,
                    )

                    seen: list[str] = []

                    async def every_purpose_connected() -> list[str]:
                        seen[:] = await connection_names(observer)
                        return list(seen) if set(seen) >= DIRECT | POOLED else []

                    names = await wait_until(
                        every_purpose_connected,
                        timeout=30,
                        what="a connection of every purpose",
                        diagnostics=lambda: f"connected: {seen}\n{fleet.diagnostics()}",
                    )
    finally:
        await observer.close()

    assert [name for name in names if not connections.is_planned(name)] == []
    counts = Counter(names)
    assert {name: counts[name] for name in DIRECT} == dict.fromkeys(DIRECT, 1)


async def test_connection_plan_names_the_migrations_connection(settings: Settings) -> None:
    engine = connections.migrations_engine(settings.sqlalchemy_url)
    try:
        async with engine.connect() as connection:
            name = await connection.scalar(text("SHOW application_name"))
    finally:
        await engine.dispose()

    assert name == "dataloader migrations"


async def test_worker_pool_sessions_end_when_left_inside_a_transaction(
    settings: Settings,
) -> None:
    """A worker cut off mid-transaction must not hold its row locks until the server notices
    the dead connection: its pool's sessions carry an idle-in-transaction timeout (direct
    connections only: a pooler refuses startup settings and has its own timeout)."""
    pooled = settings.model_copy(update={"database_direct_url": settings.database_url})
    assert pooled.behind_pooler
    for case, expected in ((settings, "15s"), (pooled, "0")):
        pool = connections.worker_pool(case, WORKER_ID)
        try:
            async with pool.connect() as connection:
                shown = await connection.execute(text("SHOW idle_in_transaction_session_timeout"))
                assert shown.scalar_one() == expected
        finally:
            await pool.dispose()
