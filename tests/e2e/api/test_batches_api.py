"""Batches over HTTP: a bulk trigger with on_complete answers its batch_id, the batch reads
back, and a bad callback is a 400 naming it that writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

BULK = "/api/v1/jobs/trigger/bulk"


def job(n: int) -> dict[str, Any]:
    return {"queue": "etl.api", "task": "noop", "lock_key": f"batch-api-{uuid.uuid4().hex}-{n}"}


CALLBACK = {"queue": "etl.api", "task": "noop", "lock_key": "batch-api-done", "args": {"a": 1}}


async def test_a_bulk_trigger_with_on_complete_makes_a_batch_that_reads_back(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(BULK, json={"jobs": [job(0), job(1)], "on_complete": CALLBACK})

    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["created"] for item in body["jobs"]] == [True, True]
    batch = await client.get(f"/api/v1/batches/{body['batch_id']}")
    assert batch.status_code == 200, batch.text
    view = batch.json()
    assert (view["batch_id"], view["total"], view["pending"]) == (body["batch_id"], 2, 2)
    assert view["counts"] == {"succeeded": 0, "failed": 0, "canceled": 0, "lost": 0}
    assert (view["callback_job_id"], view["completed_at"]) == (None, None)
    # Canceling both ends the batch: its callback is created, with the counts.
    for item in body["jobs"]:
        assert (await client.post(f"/api/v1/jobs/{item['job_id']}/cancel")).is_success
    view = (await client.get(f"/api/v1/batches/{body['batch_id']}")).json()
    assert (view["pending"], view["counts"]["canceled"]) == (0, 2)
    callback = (await client.get(f"/api/v1/jobs/{view['callback_job_id']}/status")).json()
    assert callback["args"] == {
        "a": 1,
        "batch": {
            "batch_id": body["batch_id"],
            "total": 2,
            "succeeded": 0,
            "failed": 0,
            "canceled": 2,
            "lost": 0,
        },
    }
    await client.post(f"/api/v1/jobs/{view['callback_job_id']}/cancel")  # not left to run


async def test_a_bulk_trigger_without_on_complete_has_no_batch(client: httpx.AsyncClient) -> None:
    response = await client.post(BULK, json={"jobs": [job(0)]})

    assert response.status_code == 200, response.text
    assert "batch_id" not in response.json()


BAD_CALLBACKS: dict[str, tuple[Any, str]] = {
    "idempotency-key": ({**CALLBACK, "idempotency_key": "k"}, "idempotency_key"),
    "available-at": ({**CALLBACK, "available_at": "2030-01-01T00:00:00Z"}, "available_at"),
    "batch-arg": ({**CALLBACK, "args": {"batch": 1}}, "args.batch"),
    "depends-on": ({**CALLBACK, "depends_on": [str(uuid.uuid4())]}, "depends_on"),
    "unknown-task": ({**CALLBACK, "task": "no.such.task"}, "no.such.task"),
    "missing-lock-key": ({"queue": "etl.api", "task": "noop"}, "lock_key"),
    "loopback-url": (
        {**CALLBACK, "task": "http.callback", "args": {"url": "http://127.0.0.1:9/x"}},
        "HTTP_CALLBACK_ALLOWED",
    ),
    "not-an-object": ("noop", "on_complete"),
}


@pytest.mark.parametrize(("callback", "named"), BAD_CALLBACKS.values(), ids=list(BAD_CALLBACKS))
async def test_a_bad_callback_is_a_400_naming_it_and_writes_nothing(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, callback: Any, named: str
) -> None:
    before = await api_db.fetchval("SELECT count(*) FROM dl_jobs")

    response = await client.post(BULK, json={"jobs": [job(0)], "on_complete": callback})

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "on_complete" in detail, detail
    assert named in detail, detail
    assert await api_db.fetchval("SELECT count(*) FROM dl_jobs") == before


async def test_an_unknown_batch_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/batches/{uuid.uuid4()}")

    assert response.status_code == 404, response.text
    assert "batch" in response.json()["detail"]


async def test_a_batch_id_that_is_not_a_uuid_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/batches/abc")

    assert response.status_code == 400, response.text
    assert "batch_id" in response.json()["detail"]
