"""POST /api/v1/jobs/cancel and /retry on a real server: per-item results, and what is refused.

No worker runs here: queued jobs stay queued, and finished states are written straight to
the table, as a worker would have left them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import httpx

from app.http.jobs.schemas import BULK_ACTION_LIMIT

TRIGGER = "/api/v1/jobs/trigger"
CANCEL = "/api/v1/jobs/cancel"
RETRY = "/api/v1/jobs/retry"


async def trigger(client: httpx.AsyncClient) -> uuid.UUID:
    body = {"queue": "etl.bulk", "task": "noop", "lock_key": f"k-{uuid.uuid4().hex[:8]}"}
    response = await client.post(TRIGGER, json=body)
    assert response.status_code == 200, response.text
    return uuid.UUID(response.json()["job_id"])


async def set_status(api_db: asyncpg.Connection, job_id: uuid.UUID, status: str) -> None:
    """Leave the job as a worker would have: running, or finished on attempt 1."""
    finished = None if status == "running" else datetime.now(UTC)
    await api_db.execute(
        "UPDATE dl_jobs SET status = $2, attempt = 1, started_at = now(), finished_at = $3"
        " WHERE job_id = $1",
        job_id,
        status,
        finished,
    )


async def status_of(api_db: asyncpg.Connection, job_id: uuid.UUID) -> str:
    return str(await api_db.fetchval("SELECT status FROM dl_jobs WHERE job_id = $1", job_id))


async def test_bulk_cancel_acts_on_each_job_on_its_own(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    """Queued: canceled; running: asked to stop; finished: conflict; unknown: not_found."""
    queued, running, done = [await trigger(client) for _ in range(3)]
    await set_status(api_db, running, "running")
    await set_status(api_db, done, "succeeded")
    unknown = uuid.uuid4()

    response = await client.post(
        CANCEL, json={"job_ids": [str(queued), str(running), str(done), str(unknown)]}
    )

    assert response.status_code == 200, response.text
    assert response.json()["results"] == [
        {"job_id": str(queued), "outcome": "canceled", "status": "canceled"},
        {"job_id": str(running), "outcome": "canceled", "status": "running"},
        {
            "job_id": str(done),
            "outcome": "conflict",
            "status": "succeeded",
            "detail": "job already finished with status 'succeeded'",
        },
        {"job_id": str(unknown), "outcome": "not_found"},
    ]
    assert await status_of(api_db, queued) == "canceled"
    assert await api_db.fetchval("SELECT cancel_requested FROM dl_jobs WHERE job_id = $1", running)
    assert await status_of(api_db, done) == "succeeded"


async def test_bulk_retry_acts_on_each_job_on_its_own(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    """Failed and canceled jobs are queued again; a queued one is a conflict, the rest stand."""
    failed, canceled, queued = [await trigger(client) for _ in range(3)]
    await set_status(api_db, failed, "failed")
    await set_status(api_db, canceled, "canceled")

    response = await client.post(RETRY, json={"job_ids": [str(failed), str(queued), str(canceled)]})

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["job_id"], r["outcome"], r.get("status")) for r in results] == [
        (str(failed), "retried", "queued"),
        (str(queued), "conflict", "queued"),
        (str(canceled), "retried", "queued"),
    ]
    assert await status_of(api_db, failed) == "queued"
    assert await status_of(api_db, canceled) == "queued"
    events = await api_db.fetchval(
        "SELECT count(*) FROM dl_job_events WHERE job_id = $1 AND event = 'retried'", failed
    )
    assert events == 1


async def test_bulk_cancel_refuses_more_than_the_limit(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    """One id past the limit is a 400, and not one job is touched."""
    job_id = await trigger(client)
    ids = [str(job_id)] + [str(uuid.uuid4()) for _ in range(BULK_ACTION_LIMIT)]

    response = await client.post(CANCEL, json={"job_ids": ids})

    assert response.status_code == 400, response.text
    assert "job_ids" in response.json()["detail"]
    assert await status_of(api_db, job_id) == "queued"


async def test_bulk_cancel_refuses_a_repeated_id(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    """An id given twice is a 400 naming both places, and nothing is canceled."""
    job_id = await trigger(client)

    response = await client.post(CANCEL, json={"job_ids": [str(job_id), str(job_id)]})

    assert response.status_code == 400, response.text
    assert response.json()["detail"] == f"job_ids[1] repeats job_ids[0] ({job_id})"
    assert await status_of(api_db, job_id) == "queued"


async def test_bulk_retry_refuses_hostile_bodies(client: httpx.AsyncClient) -> None:
    """Empty lists, non-UUIDs, wrong types and unknown fields are a 400 each, never a 500."""
    bodies: list[object] = [
        {"job_ids": []},
        {"job_ids": ["not-a-uuid"]},
        {"job_ids": "0f9c4c2e-6f51-4a8e-9d0b-2b7f1f3c9a10"},
        {"job_ids": [None]},
        {"job_ids": [str(uuid.uuid4())], "extra": 1},
        {},
        [],
        {"job_ids": ["\u0000"]},
    ]
    for body in bodies:
        response = await client.post(RETRY, json=body)
        assert response.status_code == 400, (body, response.text)


async def test_bulk_cancel_needs_a_json_body(client: httpx.AsyncClient) -> None:
    """A JSON body sent as text/plain is a 415, like every JSON endpoint's."""
    body = b'{"job_ids": ["0f9c4c2e-6f51-4a8e-9d0b-2b7f1f3c9a10"]}'
    response = await client.post(CANCEL, content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415, response.text
