"""POST /api/v1/jobs/{id}/retry on a real server: what a retry changes, and when it is refused.

No worker runs here: finished states are written straight to the table (a worker's retry run
is in tests/e2e/test_retry.py).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

TRIGGER = "/api/v1/jobs/trigger"


async def trigger(client: httpx.AsyncClient, **fields: Any) -> uuid.UUID:
    body = {"queue": "etl.retry", "task": "noop", "lock_key": f"k-{uuid.uuid4().hex[:8]}"}
    response = await client.post(TRIGGER, json={**body, **fields})
    assert response.status_code == 200, response.text
    return uuid.UUID(response.json()["job_id"])


async def finish(
    api_db: asyncpg.Connection, job_id: uuid.UUID, status: str, *, attempt: int, **extra: Any
) -> None:
    """Put the job in a final state as a worker (or the reaper, or a cancel) would."""
    values = {
        "status": status,
        "attempt": attempt,
        "finished_at": datetime.now(UTC),
        "error": "boom" if status in ("failed", "lost") else None,
        "progress": '{"processed": 1, "total": 4}',
        "heartbeat_at": datetime.now(UTC),
        "started_at": datetime.now(UTC),
        "worker_id": "etl-1",
        **extra,
    }
    names = list(values)
    assignments = ", ".join(
        f"{name} = ${i + 2}" + ("::jsonb" if name == "progress" else "")
        for i, name in enumerate(names)
    )
    await api_db.execute(
        f"UPDATE dl_jobs SET {assignments} WHERE job_id = $1", job_id, *values.values()
    )


async def dispatches(api_db: asyncpg.Connection, job_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await api_db.fetch(
            "SELECT id, status::text AS status, entrypoint, priority FROM pgqueuer"
            " WHERE payload = $1 ORDER BY id",
            job_id.bytes,
        )
    )


async def test_retry_failed_job_requeues_with_new_budget_dispatch_and_event(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    job_id = await trigger(client, max_attempts=3, priority=7)
    old_pgq = await api_db.fetchval("SELECT pgq_job_id FROM dl_jobs WHERE job_id = $1", job_id)
    await api_db.execute("DELETE FROM pgqueuer WHERE id = $1", old_pgq)  # the worker consumed it
    await finish(api_db, job_id, "failed", attempt=3)

    response = await client.post(f"/api/v1/jobs/{job_id}/retry")

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["job_id"] == str(job_id)
    assert job["status"] == "queued"
    assert job["attempt"] == 3
    assert job["max_attempts"] == 6
    for cleared in ("error", "finished_at", "progress", "lease_expires_at", "heartbeat_at"):
        assert job[cleared] is None, cleared
    assert job["cancel_requested"] is False
    assert job["started_at"] is not None  # the first start stays on record
    assert job == (await client.get(f"/api/v1/jobs/{job_id}")).json()

    row = await api_db.fetchrow("SELECT * FROM dl_jobs WHERE job_id = $1", job_id)
    assert row["progress"] is None  # SQL NULL, not JSON null
    assert row["error"] is None
    [dispatch] = await dispatches(api_db, job_id)
    assert row["pgq_job_id"] == dispatch["id"] != old_pgq
    assert (dispatch["status"], dispatch["entrypoint"], dispatch["priority"]) == (
        "queued",
        "etl.retry",
        -7,
    )
    events = (await client.get(f"/api/v1/jobs/{job_id}/events")).json()["events"]
    assert [(e["event"], e["attempt"]) for e in events][-1] == ("retried", 3)
    assert events[-1]["details"] == {
        "previous_status": "failed",
        "max_attempts_before": 3,
        "max_attempts": 6,
    }


async def test_retry_again_extends_by_the_original_budget(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    job_id = await trigger(client, max_attempts=2)
    await finish(api_db, job_id, "failed", attempt=2)
    first = (await client.post(f"/api/v1/jobs/{job_id}/retry")).json()
    await finish(api_db, job_id, "lost", attempt=4)

    second = await client.post(f"/api/v1/jobs/{job_id}/retry")

    assert first["max_attempts"] == 4
    assert second.status_code == 200
    assert (second.json()["attempt"], second.json()["max_attempts"]) == (4, 6)
    details = [
        e["details"]
        for e in (await client.get(f"/api/v1/jobs/{job_id}/events")).json()["events"]
        if e["event"] == "retried"
    ]
    assert details == [
        {"previous_status": "failed", "max_attempts_before": 2, "max_attempts": 4},
        {"previous_status": "lost", "max_attempts_before": 4, "max_attempts": 6},
    ]


async def test_retry_canceled_job_clears_the_cancel_flag(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    job_id = await trigger(client, max_attempts=5)
    assert (await client.post(f"/api/v1/jobs/{job_id}/cancel")).json()["status"] == "canceled"

    response = await client.post(f"/api/v1/jobs/{job_id}/retry")

    assert response.status_code == 200
    job = response.json()
    assert (job["status"], job["attempt"], job["max_attempts"]) == ("queued", 0, 5)
    assert job["cancel_requested"] is False
    assert job["finished_at"] is None
    [dispatch] = await dispatches(api_db, job_id)  # the canceled dispatch was withdrawn
    assert dispatch["status"] == "queued"


async def test_retry_lost_job_is_allowed(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    job_id = await trigger(client, max_attempts=1)
    await finish(api_db, job_id, "lost", attempt=1)

    response = await client.post(f"/api/v1/jobs/{job_id}/retry")

    assert response.status_code == 200
    assert (response.json()["attempt"], response.json()["max_attempts"]) == (1, 2)


@pytest.mark.parametrize("status", ["queued", "running", "succeeded"])
async def test_retry_refuses_live_or_succeeded_job_with_409(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, status: str
) -> None:
    job_id = await trigger(client)
    if status != "queued":
        await finish(api_db, job_id, status, attempt=1)
    before = await api_db.fetchrow("SELECT * FROM dl_jobs WHERE job_id = $1", job_id)
    events_before = await api_db.fetchval(
        "SELECT count(*) FROM dl_job_events WHERE job_id = $1", job_id
    )

    response = await client.post(f"/api/v1/jobs/{job_id}/retry")

    assert response.status_code == 409
    body = response.json()
    assert body["job_status"] == status
    assert f"'{status}'" in body["detail"]
    assert "failed, lost or canceled" in body["detail"]
    assert await api_db.fetchrow("SELECT * FROM dl_jobs WHERE job_id = $1", job_id) == before
    assert (
        await api_db.fetchval("SELECT count(*) FROM dl_job_events WHERE job_id = $1", job_id)
        == events_before
    )


async def test_retry_concurrent_requests_one_wins_others_409(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    job_id = await trigger(client, max_attempts=3)
    await api_db.execute(
        "DELETE FROM pgqueuer WHERE id = (SELECT pgq_job_id FROM dl_jobs WHERE job_id = $1)",
        job_id,
    )
    await finish(api_db, job_id, "failed", attempt=3)

    responses = await asyncio.gather(
        *(client.post(f"/api/v1/jobs/{job_id}/retry") for _ in range(12))
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 11
    assert {r.json()["job_status"] for r in responses if r.status_code == 409} == {"queued"}
    assert len(await dispatches(api_db, job_id)) == 1
    retried = await api_db.fetchval(
        "SELECT count(*) FROM dl_job_events WHERE job_id = $1 AND event = 'retried'", job_id
    )
    assert retried == 1
    row = await api_db.fetchrow(
        "SELECT attempt, max_attempts FROM dl_jobs WHERE job_id = $1", job_id
    )
    assert (row["attempt"], row["max_attempts"]) == (3, 6)


async def test_retried_job_is_listed_as_queued(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = f"retry.{uuid.uuid4().hex[:8]}"
    job_id = await trigger(client, queue=queue)
    await finish(api_db, job_id, "failed", attempt=1)
    failed = (await client.get("/api/v1/jobs", params={"queue": queue, "status": "failed"})).json()

    await client.post(f"/api/v1/jobs/{job_id}/retry")

    assert [j["job_id"] for j in failed["jobs"]] == [str(job_id)]
    listing = await client.get(
        "/api/v1/jobs", params={"queue": queue, "status": "failed,lost,canceled"}
    )
    assert listing.json()["jobs"] == []
    queued = (await client.get("/api/v1/jobs", params={"queue": queue, "status": "queued"})).json()
    assert [j["job_id"] for j in queued["jobs"]] == [str(job_id)]
