"""POST /api/v1/jobs/trigger/bulk of a running server: all jobs or none, answers in order."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

BULK = "/api/v1/jobs/trigger/bulk"
JSON = {"content-type": "application/json"}


def item(**overrides: object) -> dict[str, Any]:
    """A valid trigger body, as one item of a bulk request."""
    values: dict[str, Any] = {"queue": "etl.bulk", "task": "noop", "lock_key": "customer-1"}
    values.update(overrides)
    return values


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


async def bulk(client: httpx.AsyncClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.post(BULK, json={"jobs": items})
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"jobs", "warnings"}
    # No worker runs in these API modules: one warning per queue of the call, in order.
    queues = dict.fromkeys(item["queue"] for item in items)
    assert data["warnings"] == [
        f"no live worker serves queue {queue!r}; the job waits until one does" for queue in queues
    ]
    answers: list[dict[str, Any]] = data["jobs"]
    return answers


async def row_counts(api_db: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        int(await api_db.fetchval("SELECT count(*) FROM dl_jobs")),
        int(await api_db.fetchval("SELECT count(*) FROM dl_job_events")),
        int(await api_db.fetchval("SELECT count(*) FROM pgqueuer")),
    )


async def test_bulk_trigger_creates_every_job_in_order(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    items = [
        item(args={"i": 0}),
        item(args={"i": 1}, queue="etl.other", priority=3, lock_key="customer-2"),
        item(args={"i": 2}, max_attempts=2, lease_ttl_sec=90),
    ]
    before = await row_counts(api_db)

    answers = await bulk(client, items)

    assert len(answers) == 3
    for answer in answers:
        assert set(answer) == {"job_id", "status", "created"}
        assert answer["status"] == "queued"
        assert answer["created"] is True
    assert len({a["job_id"] for a in answers}) == 3
    assert await row_counts(api_db) == (before[0] + 3, before[1] + 3, before[2] + 3)
    for index, (answer, sent) in enumerate(zip(answers, items, strict=True)):
        status = await client.get(f"/api/v1/jobs/{answer['job_id']}/status")
        assert status.status_code == 200
        data = status.json()
        assert data["status"] == "queued"
        assert data["args"] == {"i": index}
        assert data["queue"] == sent["queue"]
        assert data["lock_key"] == sent["lock_key"]
        assert data["priority"] == sent.get("priority", 100)
        assert data["max_attempts"] == sent.get("max_attempts", 5)
        assert data["lease_ttl_sec"] == sent.get("lease_ttl_sec", 60)
        row = await api_db.fetchrow(
            "SELECT j.pgq_job_id, q.payload, q.entrypoint, q.priority FROM dl_jobs j"
            " JOIN pgqueuer q ON q.id = j.pgq_job_id WHERE j.job_id = $1",
            uuid.UUID(answer["job_id"]),
        )
        assert bytes(row["payload"]) == uuid.UUID(answer["job_id"]).bytes
        assert row["entrypoint"] == sent["queue"]
        assert row["priority"] == -sent.get("priority", 100)


async def test_bulk_trigger_per_item_idempotency(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key, other_key = new_key(), new_key()
    earlier = (await client.post("/api/v1/jobs/trigger", json=item(idempotency_key=key))).json()
    canceled = await client.post(f"/api/v1/jobs/{earlier['job_id']}/cancel")
    assert canceled.status_code == 200
    before = await row_counts(api_db)

    answers = await bulk(
        client,
        [
            item(idempotency_key=other_key, args={"which": "first"}),
            # The same requests again (a different one is a 409: test_idempotency_api.py).
            item(idempotency_key=key),
            item(),
            item(idempotency_key=other_key, args={"which": "first"}),
        ],
    )

    assert answers[0]["created"] is True
    assert answers[1] == {"job_id": earlier["job_id"], "status": "canceled", "created": False}
    assert answers[2]["created"] is True
    assert answers[3] == {"job_id": answers[0]["job_id"], "status": "queued", "created": False}
    assert await row_counts(api_db) == (before[0] + 2, before[1] + 2, before[2] + 2)
    stored = await api_db.fetchval("SELECT args FROM dl_jobs WHERE idempotency_key = $1", other_key)
    assert json.loads(stored) == {"which": "first"}

    again = await bulk(
        client,
        [item(idempotency_key=other_key, args={"which": "first"}), item(idempotency_key=key)],
    )

    assert again == [
        {"job_id": answers[0]["job_id"], "status": "queued", "created": False},
        {"job_id": earlier["job_id"], "status": "canceled", "created": False},
    ]
    assert await row_counts(api_db) == (before[0] + 2, before[1] + 2, before[2] + 2)


async def test_bulk_trigger_thousand_items_is_the_limit(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    before = await row_counts(api_db)

    answers = await bulk(client, [item(args={"i": i}) for i in range(1000)])

    assert len(answers) == 1000
    assert all(a["created"] for a in answers)
    assert len({a["job_id"] for a in answers}) == 1000
    assert await row_counts(api_db) == (before[0] + 1000, before[1] + 1000, before[2] + 1000)
    stored = await api_db.fetch(
        "SELECT job_id, args FROM dl_jobs WHERE job_id = ANY($1::uuid[])",
        [uuid.UUID(a["job_id"]) for a in answers],
    )
    index_of = {str(r["job_id"]): json.loads(r["args"])["i"] for r in stored}
    assert [index_of[a["job_id"]] for a in answers] == list(range(1000))


@pytest.mark.parametrize("count", [0, 1001])
async def test_bulk_trigger_item_count_out_of_bounds_is_rejected(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, count: int
) -> None:
    before = await row_counts(api_db)

    response = await client.post(BULK, json={"jobs": [item() for _ in range(count)]})

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "jobs" in detail
    # The message states the bound that was broken.
    assert ("length >= 1" if count == 0 else "length <= 1000") in detail
    assert await row_counts(api_db) == before


# (the bad item, words its detail must hold besides `jobs[2]`)
INVALID_ITEMS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "priority-negative": (item(priority=-1), ("priority",)),
    "priority-above-max": (item(priority=10_001), ("priority",)),
    "priority-string": (item(priority="high"), ("priority",)),
    "unknown-task": (item(task="no.such.task"), ("no.such.task",)),
    "empty-lock_key": (item(lock_key=""), ("lock_key",)),
    "blank-lock_key": (item(lock_key="   "), ("lock_key",)),
    "missing-lock_key": ({"queue": "etl.bulk", "task": "noop"}, ("lock_key",)),
    "queue-int": (item(queue=5), ("queue",)),
    "args-list": (item(args=[1, 2]), ("args",)),
    "unknown-field": (item(colour="red"), ("colour",)),
    "nul-in-args": (item(args={"a": "x\x00y"}), ("args",)),
    "available_at-words": (item(available_at="tomorrow"), ("available_at",)),
    "item-not-object": ("just a string", ()),
    "item-null": (None, ()),
}


@pytest.mark.parametrize(("bad", "words"), INVALID_ITEMS.values(), ids=list(INVALID_ITEMS))
async def test_bulk_trigger_invalid_item_names_it_and_writes_nothing(
    client: httpx.AsyncClient,
    api_db: asyncpg.Connection,
    bad: Any,
    words: tuple[str, ...],
) -> None:
    items: list[Any] = [item(args={"i": i}, idempotency_key=new_key()) for i in range(4)]
    items[2] = bad
    before = await row_counts(api_db)

    response = await client.post(BULK, json={"jobs": items})

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert "jobs[2]" in detail, detail
    for word in words:
        assert word in detail, detail
    assert await row_counts(api_db) == before
    for other in items[:2] + items[3:]:
        assert (
            await api_db.fetchval(
                "SELECT count(*) FROM dl_jobs WHERE idempotency_key = $1", other["idempotency_key"]
            )
            == 0
        )


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_bulk_trigger_wrong_content_type_is_unsupported(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, content_type: str
) -> None:
    before = await row_counts(api_db)

    response = await client.post(
        BULK,
        content=json.dumps({"jobs": [item()]}).encode(),
        headers={"content-type": content_type},
    )

    assert response.status_code == 415, response.text
    assert content_type in response.json()["detail"]
    assert await row_counts(api_db) == before


NOT_A_BULK_OBJECT: dict[str, bytes] = {
    "array-of-items": json.dumps([item()]).encode(),
    "single-trigger-body": json.dumps(item()).encode(),
    "missing-jobs": b"{}",
    "extra-field": json.dumps({"jobs": [item()], "dry_run": True}).encode(),
    "null": b"null",
    "number": b"42",
    "string": b'"jobs"',
    "malformed": b'{"jobs": [',
    "empty": b"",
}


@pytest.mark.parametrize("raw", NOT_A_BULK_OBJECT.values(), ids=list(NOT_A_BULK_OBJECT))
async def test_bulk_trigger_body_that_is_not_a_bulk_object_is_bad_request(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, raw: bytes
) -> None:
    before = await row_counts(api_db)

    response = await client.post(BULK, content=raw, headers=JSON)

    assert response.status_code == 400, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert detail
    assert await row_counts(api_db) == before


@pytest.mark.parametrize(
    "jobs_value",
    [None, "many", 3, item()],
    ids=["null", "string", "number", "object"],
)
async def test_bulk_trigger_jobs_field_of_the_wrong_type_is_bad_request(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, jobs_value: Any
) -> None:
    """A client error about the `jobs` field itself must be a 400 naming it, not a 500.

    Litestar files a validation error whose key equals a dependency's name under server
    errors; the handler's JobService dependency is also called `jobs`.
    """
    before = await row_counts(api_db)

    response = await client.post(BULK, json={"jobs": jobs_value})

    assert response.status_code == 400, (response.status_code, response.text)
    assert "jobs" in response.json()["detail"]
    assert await row_counts(api_db) == before
