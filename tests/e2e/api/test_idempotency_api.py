"""A reused idempotency_key over HTTP: the same request finds the job, a different one is a 409.

The 409 names the key and the first job (`job_id` in the body too); in a bulk call it names
the item, and the earlier item when two items of the call share the key. Nothing is written.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

TRIGGER = "/api/v1/jobs/trigger"
BULK = "/api/v1/jobs/trigger/bulk"


def body(**overrides: object) -> dict[str, Any]:
    """A valid trigger body."""
    values: dict[str, Any] = {"queue": "etl.idem", "task": "noop", "lock_key": "customer-1"}
    values.update(overrides)
    return values


# No worker runs in these API modules: every trigger answer warns that nobody serves the queue.
def unserved(queue: str) -> str:
    """The warning a trigger's answer carries for a queue no live worker serves."""
    return f"no live worker serves queue {queue!r}; the job waits until one does"


def new_key() -> str:
    return f"idem-{uuid.uuid4()}"


async def row_counts(api_db: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        int(await api_db.fetchval("SELECT count(*) FROM dl_jobs")),
        int(await api_db.fetchval("SELECT count(*) FROM dl_job_events")),
        int(await api_db.fetchval("SELECT count(*) FROM pgqueuer")),
    )


def conflict_detail(key: str, job_id: str, where: str = "") -> str:
    return (
        f"{where}idempotency_key {key!r} is already used by {job_id}, created from a different"
        " request; send the same request to get that job, or use another key"
    )


async def test_trigger_reused_key_with_different_request_is_409_naming_key_and_job(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = new_key()
    first = await client.post(TRIGGER, json=body(idempotency_key=key, args={"steps": 1}))
    assert first.status_code == 200, first.text
    job_id = first.json()["job_id"]
    before = await row_counts(api_db)

    other = await client.post(TRIGGER, json=body(idempotency_key=key, args={"steps": 2}))
    same = await client.post(TRIGGER, json=body(idempotency_key=key, args={"steps": 1}))

    assert other.status_code == 409, other.text
    assert other.json() == {
        "status_code": 409,
        "detail": conflict_detail(key, f"job {job_id}"),
        "job_id": job_id,
        "request_id": other.headers["x-request-id"],
    }
    assert same.status_code == 200, same.text
    assert same.json() == {
        "job_id": job_id,
        "status": "queued",
        "created": False,
        "warnings": [unserved("etl.idem")],
    }
    assert await row_counts(api_db) == before


async def test_trigger_concurrent_different_requests_for_one_key_one_job_rest_409(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    """Triggers that share a round (group commit) still answer each for itself."""
    key = new_key()
    requests = [body(idempotency_key=key, args={"which": "a" if i % 2 else "b"}) for i in range(40)]

    responses = await asyncio.gather(*(client.post(TRIGGER, json=r) for r in requests))

    by_which: dict[str, set[int]] = {"a": set(), "b": set()}
    for request, response in zip(requests, responses, strict=True):
        by_which[request["args"]["which"]].add(response.status_code)
    assert sorted(by_which.values(), key=sorted) == [{200}, {409}], by_which
    rows = await api_db.fetch("SELECT job_id FROM dl_jobs WHERE idempotency_key = $1", key)
    assert len(rows) == 1
    job_id = str(rows[0]["job_id"])
    for response in responses:
        assert response.json()["job_id"] == job_id, response.text
    assert sum(r.status_code == 200 and r.json()["created"] for r in responses) == 1


async def test_bulk_item_reusing_key_with_different_request_is_409_naming_item_and_job(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = new_key()
    first = await client.post(TRIGGER, json=body(idempotency_key=key))
    job_id = first.json()["job_id"]
    before = await row_counts(api_db)
    items = [body(), body(idempotency_key=key), body(), body(idempotency_key=key, priority=1)]

    response = await client.post(BULK, json={"jobs": items})

    assert response.status_code == 409, response.text
    assert response.json() == {
        "status_code": 409,
        "detail": conflict_detail(key, f"job {job_id}", "jobs[3]: "),
        "job_id": job_id,
        "request_id": response.headers["x-request-id"],
    }
    assert await row_counts(api_db) == before  # all or none


async def test_bulk_two_items_with_one_key_and_different_requests_is_409_naming_both(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = new_key()
    before = await row_counts(api_db)
    items = [body(), body(idempotency_key=key), body(idempotency_key=key, lock_key="customer-2")]

    response = await client.post(BULK, json={"jobs": items})

    assert response.status_code == 409, response.text
    answer = response.json()
    job_id = answer["job_id"]
    uuid.UUID(job_id)
    assert answer["detail"] == conflict_detail(key, f"jobs[1] (job {job_id})", "jobs[2]: ")
    assert await row_counts(api_db) == before  # the first item's job was not kept either
    assert (
        await api_db.fetchval("SELECT count(*) FROM dl_jobs WHERE idempotency_key = $1", key) == 0
    )


async def test_bulk_reserved_namespace_is_400_naming_item_and_field(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    before = await row_counts(api_db)

    key = await client.post(BULK, json={"jobs": [body(), body(idempotency_key="dl:x")]})
    producer = await client.post(BULK, json={"jobs": [body(producer="DL:schedule:a"), body()]})

    assert key.status_code == 400, key.text
    assert key.json()["detail"].startswith("jobs[1]: values starting with 'dl:' are reserved")
    assert key.json()["detail"].endswith("(field `idempotency_key`)")
    assert producer.status_code == 400, producer.text
    assert producer.json()["detail"].startswith("jobs[0]: ")
    assert producer.json()["detail"].endswith("(field `producer`)")
    assert await row_counts(api_db) == before


async def test_openapi_documents_the_409_of_both_trigger_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]

    for path in (TRIGGER, BULK):
        conflict = paths[path]["post"]["responses"]["409"]
        assert "different request" in conflict["description"]
        schema = conflict["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorResponse")


async def test_reused_key_with_another_concurrency_group_is_409_and_the_same_group_finds_the_job(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = new_key()
    group = {"concurrency_key": "partner-api", "concurrency_limit": 3}
    first = await client.post(TRIGGER, json=body(idempotency_key=key, **group))
    assert first.status_code == 200, first.text
    job_id = first.json()["job_id"]
    before = await row_counts(api_db)

    same = await client.post(TRIGGER, json=body(idempotency_key=key, **group))
    other_limit = await client.post(
        TRIGGER, json=body(idempotency_key=key, concurrency_key="partner-api", concurrency_limit=4)
    )
    other_key = await client.post(
        TRIGGER, json=body(idempotency_key=key, concurrency_key="other", concurrency_limit=3)
    )
    no_group = await client.post(TRIGGER, json=body(idempotency_key=key))

    assert same.status_code == 200, same.text
    assert (same.json()["job_id"], same.json()["created"]) == (job_id, False)
    for answer in (other_limit, other_key, no_group):
        assert answer.status_code == 409, answer.text
        assert answer.json()["detail"] == conflict_detail(key, f"job {job_id}")
    assert await row_counts(api_db) == before
