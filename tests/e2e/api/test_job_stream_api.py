"""GET /api/v1/jobs/{id}/stream on a running server, with a real worker moving the jobs on."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.api_servers import ApiServer
from tests.support.job_streams import open_stream
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet, worker_fleet

QUEUE = "etl.stream"
FINAL = {"succeeded", "failed", "canceled", "lost"}
WATCH_APP_NAME = "dataloader job watch"


@pytest.fixture(scope="module")
def stream_fleet(
    api_server: ApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerFleet]:
    """One worker for the module's jobs; short heartbeats so progress is saved often."""
    with worker_fleet(
        PROJECT_ROOT,
        api_server.dsn,
        tmp_path_factory.mktemp("stream_workers"),
        env={"DL_HEARTBEAT_SEC": "0.3"},
    ) as fleet:
        fleet.start(queues={QUEUE: 8})
        yield fleet


@pytest.fixture
async def worker(stream_fleet: WorkerFleet) -> WorkerFleet:
    """The module's worker, once it serves its queue."""
    await stream_fleet.wait_ready(stream_fleet.workers[0])
    return stream_fleet


async def trigger(client: httpx.AsyncClient, **overrides: object) -> str:
    """Create a noop job on the stream queue; its id."""
    body: dict[str, Any] = {
        "queue": QUEUE,
        "task": "noop",
        "lock_key": f"stream-{uuid.uuid4()}",
        "args": {"steps": 5, "sleep": 0.4},
        **overrides,
    }
    response = await client.post("/api/v1/jobs/trigger", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


def soon(seconds: float) -> str:
    """An available_at this far ahead: the job stays queued until then."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def watch_backends(api_db: asyncpg.Connection) -> list[int]:
    """Pids of the API's LISTEN connections on this database."""
    rows = await api_db.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
        " AND datname = current_database()",
        WATCH_APP_NAME,
    )
    return [row["pid"] for row in rows]


def processed(view: dict[str, Any]) -> int:
    return int((view["progress"] or {}).get("processed", 0))


async def test_job_stream_follows_a_job_from_queued_to_succeeded(
    client: httpx.AsyncClient, worker: WorkerFleet
) -> None:
    job_id = await trigger(client, available_at=soon(1.5), args={"steps": 6, "sleep": 0.4})

    async with open_stream(client, job_id) as stream:
        first = await stream.next_event()
        assert first is not None
        assert first["job_id"] == job_id
        assert first["status"] == "queued"
        await stream.read_to_end()

    assert stream.ended
    assert stream.statuses() == ["queued", "running", "succeeded"], stream.events
    progress = [processed(view) for view in stream.events]
    assert progress == sorted(progress), progress
    running_progress = {processed(v) for v in stream.events if v["status"] == "running"}
    assert len(running_progress - {0}) >= 2, stream.events  # several steps seen live
    assert stream.events[-1]["progress"] == {"processed": 6, "total": 6}
    # Each event is a change: no two in a row are the same.
    assert all(a != b for a, b in zip(stream.events, stream.events[1:], strict=False))


async def test_job_stream_shows_a_cancel_and_ends_canceled(
    client: httpx.AsyncClient, worker: WorkerFleet
) -> None:
    job_id = await trigger(client, args={"steps": 100, "sleep": 0.1})

    async with open_stream(client, job_id) as stream:
        await stream.until(lambda view: view["status"] == "running")
        response = await client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert response.status_code == 200, response.text
        flagged = await stream.until(lambda view: view["cancel_requested"])
        await stream.read_to_end()

    assert flagged["status"] in {"running", "canceled"}
    assert stream.ended
    assert stream.events[-1]["status"] == "canceled"
    assert processed(stream.events[-1]) < 100


async def test_job_stream_of_a_finished_job_sends_one_event_and_ends(
    client: httpx.AsyncClient,
) -> None:
    job_id = await trigger(client, available_at=soon(3600))
    assert (await client.post(f"/api/v1/jobs/{job_id}/cancel")).status_code == 200

    async with open_stream(client, job_id) as stream:
        events = await stream.read_to_end(timeout=5)

    assert [view["status"] for view in events] == ["canceled"]
    assert stream.ended


async def test_job_stream_clients_share_one_listen_connection(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, worker: WorkerFleet
) -> None:
    job_ids = [
        await trigger(client, available_at=soon(2), args={"steps": 2, "sleep": 0.2})
        for _ in range(10)
    ]
    targets = job_ids + job_ids  # 20 streams, two per job

    async with contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(open_stream(client, j)) for j in targets]
        for stream in streams:
            assert (await stream.next_event()) is not None
        await wait_until(lambda: watch_backends(api_db), timeout=10, what="the LISTEN connection")
        assert len(await watch_backends(api_db)) == 1

        results = await asyncio.gather(*(stream.read_to_end() for stream in streams))

    for job_id, events in zip(targets, results, strict=True):
        assert events[-1]["job_id"] == job_id
        assert events[-1]["status"] == "succeeded", events
    assert len(await watch_backends(api_db)) == 1


async def test_job_stream_recovers_from_a_lost_listen_connection(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, worker: WorkerFleet
) -> None:
    running_id = await trigger(client, args={"steps": 12, "sleep": 0.25})
    queued_id = await trigger(client, available_at=soon(3600))

    async with open_stream(client, running_id) as running, open_stream(client, queued_id) as queued:
        assert (await queued.next_event()) is not None
        await running.until(lambda view: view["status"] == "running")
        (old_pid,) = await wait_until(lambda: watch_backends(api_db), timeout=10, what="listener")

        assert await api_db.fetchval("SELECT pg_terminate_backend($1)", old_pid)
        # Changed while nobody listens: only the re-read after reconnecting can show it.
        assert (await client.post(f"/api/v1/jobs/{queued_id}/cancel")).status_code == 200

        canceled = await queued.read_to_end()
        events = await running.read_to_end()
        new_pids = await watch_backends(api_db)

    assert canceled[-1]["status"] == "canceled"
    assert events[-1]["status"] == "succeeded"
    assert events[-1]["progress"] == {"processed": 12, "total": 12}
    assert len(new_pids) == 1
    assert new_pids != [old_pid]


async def test_job_stream_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/jobs/{uuid.uuid4()}/stream")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert "not found" in response.json()["detail"]


async def test_job_stream_bad_job_id_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/jobs/not-a-uuid/stream")

    assert response.status_code == 400
    assert "job_id" in response.json()["detail"]
