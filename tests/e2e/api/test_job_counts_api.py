"""GET /api/v1/jobs/counts and the listing's `args` filter on a real server (no worker runs)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from app.domain.filters import MAX_ARGS_FILTER_TEXT

COUNTS = "/api/v1/jobs/counts"
JOBS = "/api/v1/jobs"


async def trigger(client: httpx.AsyncClient, queue: str, **fields: Any) -> uuid.UUID:
    body = {"queue": queue, "task": "noop", "lock_key": f"k-{uuid.uuid4().hex[:8]}", **fields}
    response = await client.post("/api/v1/jobs/trigger", json=body)
    assert response.status_code == 200, response.text
    return uuid.UUID(response.json()["job_id"])


async def test_counts_split_queued_jobs_into_due_scheduled_and_retrying(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    """Each state counted once; a job due in 2030 is scheduled, not due; filters apply."""
    queue = f"etl.counts.{uuid.uuid4().hex[:6]}"
    later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await trigger(client, queue)
    await trigger(client, queue)
    await trigger(client, queue, available_at=later.isoformat())
    retrying = await trigger(client, queue)
    failed = await trigger(client, queue)
    await trigger(client, "etl.elsewhere")
    # As a worker leaves them: one waiting for its second attempt, one finished failed.
    await api_db.execute(
        "UPDATE dl_jobs SET attempt = 1, available_at = now() + interval '1 hour'"
        " WHERE job_id = $1",
        retrying,
    )
    await api_db.execute(
        "UPDATE dl_jobs SET status = 'failed', attempt = 1, finished_at = now() WHERE job_id = $1",
        failed,
    )

    response = await client.get(COUNTS, params={"queue": queue})

    assert response.status_code == 200, response.text
    body = response.json()
    next_due = datetime.fromisoformat(body.pop("next_due_at"))
    assert body == {
        "waiting": 0,
        "due": 2,
        "scheduled": 1,
        "retrying": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "canceled": 0,
        "lost": 0,
    }
    # The retrying job's backoff ends first (in about an hour), before 2030.
    assert timedelta(minutes=50) < next_due - datetime.now(UTC) < timedelta(minutes=70)


async def test_counts_refuse_a_bad_filter(client: httpx.AsyncClient) -> None:
    """The counts parse the listing's filters: an unknown status is the same 400."""
    response = await client.get(COUNTS, params={"status": "done"})
    assert response.status_code == 400, response.text
    assert "status" in response.json()["detail"]


async def test_list_filters_by_args_containment(client: httpx.AsyncClient) -> None:
    """`args` lists the jobs whose args contain the object, and the counts agree."""
    queue = f"etl.args.{uuid.uuid4().hex[:6]}"
    account = uuid.uuid4().hex
    match = await trigger(client, queue, args={"account": account, "day": "2026-12-01", "n": 3})
    await trigger(client, queue, args={"account": account + "x", "day": "2026-12-01"})
    await trigger(client, queue, args={"day": "2026-12-01"})

    wanted = json.dumps({"account": account, "n": 3})
    listed = await client.get(JOBS, params={"args": wanted})
    counted = await client.get(COUNTS, params={"args": wanted, "queue": queue})

    assert listed.status_code == 200, listed.text
    assert [job["job_id"] for job in listed.json()["jobs"]] == [str(match)]
    assert counted.json()["due"] == 1


async def test_list_refuses_hostile_args_filters(client: httpx.AsyncClient) -> None:
    """Anything but a bounded JSON object jsonb can hold is a 400, never a 500."""
    too_long = json.dumps({"k": "x" * MAX_ARGS_FILTER_TEXT})
    hostile = [
        "[1, 2]",
        '"text"',
        "7",
        "{not json",
        '{"a": NaN}',
        '{"a": 1e999}',
        '{"a": "\\u0000"}',
        '{"\\u0000": 1}',
        too_long,
        "[" * 900 + "]" * 900,
    ]
    for value in hostile:
        for path in (JOBS, COUNTS):
            response = await client.get(path, params={"args": value})
            assert response.status_code == 400, (path, value[:40], response.text)
            assert "`args`" in response.json()["detail"], response.text
