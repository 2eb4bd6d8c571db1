"""/api/v1/queues on a running server: counts, throughput, pause and resume."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

QUEUES = "/api/v1/queues"


def unique_queue() -> str:
    return f"q.{uuid.uuid4().hex[:10]}"


async def trigger(client: httpx.AsyncClient, queue: str, **extra: object) -> str:
    body = {"queue": queue, "task": "noop", "lock_key": uuid.uuid4().hex, **extra}
    response = await client.post("/api/v1/jobs/trigger", json=body)
    assert response.status_code == 200, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def queue_of(client: httpx.AsyncClient, queue: str) -> dict[str, Any] | None:
    response = await client.get(QUEUES)
    assert response.status_code == 200, response.text
    found = [q for q in response.json()["queues"] if q["queue"] == queue]
    return found[0] if found else None


async def entrypoint(api_db: asyncpg.Connection, job_id: str) -> str:
    """The pgqueuer entrypoint of the job's dispatch (`paused/<queue>` while parked)."""
    value: str = await api_db.fetchval(
        "SELECT q.entrypoint FROM pgqueuer q JOIN dl_jobs j ON j.pgq_job_id = q.id"
        " WHERE j.job_id = $1",
        uuid.UUID(job_id),
    )
    return value


async def test_queues_list_shows_each_queue_in_the_contract_shape(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = unique_queue()
    await trigger(client, queue)
    await trigger(client, queue)
    await api_db.execute(
        "INSERT INTO dl_jobs (job_id, queue, task, lock_key, status, finished_at)"
        " VALUES ($1, $2, 'noop', 'k', 'failed', now() - interval '2 minutes')",
        uuid.uuid4(),
        queue,
    )

    view = await queue_of(client, queue)

    assert view is not None
    assert set(view) == {
        "queue",
        "paused",
        "paused_at",
        "queued",
        "running",
        "oldest_queued_age_sec",
        "finished_last_hour",
        "throughput",
        "consumers",
        "unserved",
        "limits",
        "fairness",
    }
    assert (view["queued"], view["running"], view["paused"]) == (2, 0, False)
    assert view["limits"] == {"start": None, "per_rate_key": None}
    assert view["fairness"] == {"by": None}
    # No worker runs in this module: a backlog nobody serves.
    assert (view["consumers"], view["unserved"]) == (0, True)
    assert isinstance(view["oldest_queued_age_sec"], float)
    assert view["finished_last_hour"] == {"succeeded": 0, "failed": 1, "canceled": 0, "lost": 0}
    assert len(view["throughput"]) == 60
    first, last = view["throughput"][0], view["throughput"][-1]
    assert set(first) == {"minute", "succeeded", "failed", "canceled", "lost"}
    assert first["minute"].endswith("Z")
    assert first["minute"][17:] == "00Z"
    minutes = [datetime.fromisoformat(point["minute"]) for point in view["throughput"]]
    assert minutes[-1] - minutes[0] == timedelta(minutes=59)
    assert sum(point["failed"] for point in view["throughput"]) == 1
    assert last["succeeded"] == 0


async def test_queues_pause_parks_jobs_and_resume_releases_them(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = unique_queue()
    before = await trigger(client, queue)

    response = await client.post(f"{QUEUES}/{queue}/pause")

    assert response.status_code == 200, response.text
    paused = response.json()
    assert paused["queue"] == queue
    assert paused["paused"] is True
    assert paused["paused_at"] is not None
    assert paused["queued"] == 1
    after = await trigger(client, queue)
    assert await entrypoint(api_db, before) == f"paused/{queue}"
    assert await entrypoint(api_db, after) == f"paused/{queue}"
    listed = await queue_of(client, queue)
    assert listed is not None
    assert listed["paused"] is True
    assert listed["queued"] == 2

    response = await client.post(f"{QUEUES}/{queue}/resume")

    assert response.status_code == 200, response.text
    assert response.json()["paused"] is False
    assert response.json()["paused_at"] is None
    assert await entrypoint(api_db, before) == queue
    assert await entrypoint(api_db, after) == queue


async def test_queues_pause_of_a_queue_without_jobs_lists_it(client: httpx.AsyncClient) -> None:
    queue = unique_queue()
    assert await queue_of(client, queue) is None

    response = await client.post(f"{QUEUES}/{queue}/pause")

    assert response.status_code == 200, response.text
    listed = await queue_of(client, queue)
    assert listed is not None
    assert listed["paused"] is True
    assert listed["queued"] == 0
    assert (await client.get(f"{QUEUES}/{queue}")).json()["paused"] is True


async def test_queues_resume_of_an_unpaused_queue_is_a_no_op(client: httpx.AsyncClient) -> None:
    queue = unique_queue()
    response = await client.post(f"{QUEUES}/{queue}/resume")
    assert response.status_code == 200, response.text
    assert response.json()["paused"] is False
    assert await queue_of(client, queue) is None


@pytest.mark.parametrize("action", ["pause", "resume"])
@pytest.mark.parametrize("name", ["bad%20name", "semi;colon", "x" * 101])
async def test_queues_pause_and_resume_reject_an_invalid_name(
    client: httpx.AsyncClient, action: str, name: str
) -> None:
    response = await client.post(f"{QUEUES}/{name}/{action}")
    assert response.status_code == 400, response.text
    assert "`queue`" in response.json()["detail"]


async def test_queues_get_of_an_invalid_name_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{QUEUES}/bad%20name")
    assert response.status_code == 400
    assert "`queue`" in response.json()["detail"]
