"""The stream's JobWatch seen from inside: the API served by uvicorn in the test's own loop.

Real HTTP over TCP and a real database, so client disconnects are real; running in-process
lets the tests look at the watch's subscriptions and reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from litestar import Litestar

from app.asgi import create_app
from app.db.job_changes import LISTENER_APPLICATION_NAME
from app.devserver.embedded_postgres import free_port
from app.jobs.job_watch import JobWatch, JobWatchConfig
from tests.support.databases import settings_for
from tests.support.waiting import wait_until

KEEPALIVE_SEC = 0.2


@dataclass
class InProcessApi:
    """The app, its JobWatch and where it answers."""

    app: Litestar
    base_url: str

    @property
    def watch(self) -> JobWatch:
        watch: JobWatch = self.app.state.job_watch
        return watch


@pytest.fixture
async def in_process_api(database_dsn: str) -> AsyncIterator[InProcessApi]:
    """The API on this test's database, with a short keep-alive."""
    app = create_app(settings_for(database_dsn, app_stream_keepalive_sec=KEEPALIVE_SEC))
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), timeout=20, what="uvicorn start")
    assert not task.done(), task.exception()
    try:
        yield InProcessApi(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def http(in_process_api: InProcessApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=in_process_api.base_url, timeout=30) as client:
        yield client


async def queued_job(http: httpx.AsyncClient) -> str:
    """A noop job that stays queued (no worker runs here)."""
    body = {"queue": "etl.stream", "task": "noop", "lock_key": f"k-{uuid.uuid4()}"}
    response = await http.post("/api/v1/jobs/trigger", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


async def first_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """Read lines up to the first event's data."""
    async for line in lines:
        if line.startswith("data:"):
            view: dict[str, Any] = json.loads(line.removeprefix("data:"))
            return view
    raise AssertionError("stream ended before its first event")


async def test_job_stream_client_disconnect_releases_its_subscription(
    in_process_api: InProcessApi, http: httpx.AsyncClient
) -> None:
    job_ids = [await queued_job(http) for _ in range(3)]

    for _ in range(2):  # a second round shows nothing was left behind by the first
        async with (
            http.stream("GET", f"/api/v1/jobs/{job_ids[0]}/stream") as a,
            http.stream("GET", f"/api/v1/jobs/{job_ids[1]}/stream") as b,
            http.stream("GET", f"/api/v1/jobs/{job_ids[1]}/stream") as c,
            http.stream("GET", f"/api/v1/jobs/{job_ids[2]}/stream") as d,
        ):
            # Held until the count is read: an abandoned line iterator is closed when it is
            # collected, and closing it closes its stream, ending that subscription early.
            streams = [response.aiter_lines() for response in (a, b, c, d)]
            for lines in streams:
                assert (await first_event(lines))["status"] == "queued"
            assert in_process_api.watch.subscriber_count() == 4
        # Leaving the block closes the connections without reading the streams to an end.
        await wait_until(
            lambda: in_process_api.watch.subscriber_count() == 0,
            timeout=10,
            what="subscriptions released",
        )


async def test_job_stream_sends_keep_alive_comments_while_nothing_changes(
    http: httpx.AsyncClient,
) -> None:
    job_id = await queued_job(http)
    comments: list[str] = []

    async with http.stream("GET", f"/api/v1/jobs/{job_id}/stream") as response:
        lines = response.aiter_lines()
        await first_event(lines)
        async for line in lines:
            if line.startswith(":"):
                comments.append(line)
            if len(comments) == 2:
                break

    assert comments == [": keep-alive", ": keep-alive"]


async def test_job_stream_reads_a_changed_job_once_for_all_its_watchers(
    in_process_api: InProcessApi, http: httpx.AsyncClient, database_dsn: str
) -> None:
    job_id = await queued_job(http)
    url = f"/api/v1/jobs/{job_id}/stream"

    async with contextlib.AsyncExitStack() as stack:
        responses = [await stack.enter_async_context(http.stream("GET", url)) for _ in range(20)]
        streams = [response.aiter_lines() for response in responses]
        for lines in streams:
            await first_event(lines)
        await wait_until(
            lambda: not in_process_api.watch.has_pending_reads(),
            timeout=10,
            what="subscribe-time reads",
        )
        reads_before = in_process_api.watch.reads

        db = await asyncpg.connect(database_dsn)
        try:
            await db.execute(
                "UPDATE dl_jobs SET progress = '{\"processed\": 1}' WHERE job_id = $1",
                uuid.UUID(job_id),
            )
        finally:
            await db.close()
        views = [await asyncio.wait_for(first_event(lines), 10) for lines in streams]

    assert [view["progress"] for view in views] == [{"processed": 1}] * 20
    assert in_process_api.watch.reads == reads_before + 1


async def watch_backend_queries(db: asyncpg.Connection) -> list[str]:
    """The last query of each job watch connection on this database."""
    rows = await db.fetch(
        "SELECT query FROM pg_stat_activity WHERE application_name = $1"
        " AND datname = current_database()",
        LISTENER_APPLICATION_NAME,
    )
    return [row["query"] for row in rows]


async def test_job_stream_sees_a_change_written_before_its_listener_connected(
    in_process_api: InProcessApi, http: httpx.AsyncClient, database_dsn: str
) -> None:
    """With no listener the trigger stays silent; the new listener waits for such writers."""
    job_id = await queued_job(http)
    db = await asyncpg.connect(database_dsn)
    writer = await asyncpg.connect(database_dsn)
    try:
        assert await watch_backend_queries(db) == []
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute(
            "UPDATE dl_jobs SET status = 'canceled', finished_at = now() WHERE job_id = $1",
            uuid.UUID(job_id),
        )  # nobody listens: no notification, now or at commit

        async with http.stream("GET", f"/api/v1/jobs/{job_id}/stream") as response:
            lines = response.aiter_lines()
            assert (await first_event(lines))["status"] == "queued"  # not committed yet

            async def waiting_for_writer() -> bool:
                return any("virtualxid" in q for q in await watch_backend_queries(db))

            await wait_until(waiting_for_writer, timeout=10, what="the listener to wait")
            assert not in_process_api.watch.listening
            await transaction.commit()

            last = await asyncio.wait_for(first_event(lines), 10)
            assert last["status"] == "canceled"
    finally:
        await writer.close()
        await db.close()


async def test_job_stream_listener_closes_when_idle_and_comes_back(
    in_process_api: InProcessApi, http: httpx.AsyncClient, database_dsn: str
) -> None:
    in_process_api.watch.config = JobWatchConfig(ping_interval_sec=0.05, idle_close_sec=0.3)
    job_id = await queued_job(http)
    url = f"/api/v1/jobs/{job_id}/stream"
    db = await asyncpg.connect(database_dsn)
    try:
        async with http.stream("GET", url) as response:
            lines = response.aiter_lines()  # held: see the disconnect test
            await first_event(lines)
            await wait_until(lambda: in_process_api.watch.listening, timeout=10, what="listening")
        await wait_until(
            lambda: not in_process_api.watch.listening,
            timeout=10,
            what="the idle listener to close",
        )
        assert await watch_backend_queries(db) == []

        async with http.stream("GET", url) as response:
            lines = response.aiter_lines()
            await first_event(lines)
            await wait_until(
                lambda: in_process_api.watch.listening, timeout=10, what="listening again"
            )
            await db.execute(
                "UPDATE dl_jobs SET progress = '{\"processed\": 2}' WHERE job_id = $1",
                uuid.UUID(job_id),
            )
            view = await asyncio.wait_for(first_event(lines), 10)
            assert view["progress"] == {"processed": 2}
    finally:
        await db.close()
