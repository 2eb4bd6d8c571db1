"""Concurrency groups over HTTP: both fields or neither, in bounds, stored and shown."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.domain.spec import MAX_CONCURRENCY_LIMIT

TRIGGER = "/api/v1/jobs/trigger"
BULK = "/api/v1/jobs/trigger/bulk"


def body(**overrides: object) -> dict[str, Any]:
    values: dict[str, Any] = {"queue": "etl.api", "task": "noop", "lock_key": "customer-1"}
    values.update(overrides)
    return values


async def row_counts(api_db: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        int(await api_db.fetchval("SELECT count(*) FROM dl_jobs")),
        int(await api_db.fetchval("SELECT count(*) FROM dl_job_events")),
        int(await api_db.fetchval("SELECT count(*) FROM pgqueuer")),
    )


# name: (the group fields sent, the field the 400 must name)
INVALID_GROUPS: dict[str, tuple[dict[str, Any], str]] = {
    "key-without-limit": ({"concurrency_key": "partner-api"}, "concurrency_limit"),
    "limit-without-key": ({"concurrency_limit": 3}, "concurrency_key"),
    "limit-zero": ({"concurrency_key": "g", "concurrency_limit": 0}, "concurrency_limit"),
    "limit-negative": ({"concurrency_key": "g", "concurrency_limit": -1}, "concurrency_limit"),
    "limit-over-max": (
        {"concurrency_key": "g", "concurrency_limit": MAX_CONCURRENCY_LIMIT + 1},
        "concurrency_limit",
    ),
    "limit-huge": ({"concurrency_key": "g", "concurrency_limit": 10**30}, "concurrency_limit"),
    "limit-as-word": ({"concurrency_key": "g", "concurrency_limit": "three"}, "concurrency_limit"),
    "limit-fraction": ({"concurrency_key": "g", "concurrency_limit": 1.5}, "concurrency_limit"),
    "key-empty": ({"concurrency_key": "", "concurrency_limit": 3}, "concurrency_key"),
    "key-blank": ({"concurrency_key": "   ", "concurrency_limit": 3}, "concurrency_key"),
    "key-too-long": ({"concurrency_key": "k" * 501, "concurrency_limit": 3}, "concurrency_key"),
    "key-nul": ({"concurrency_key": "a\u0000b", "concurrency_limit": 3}, "concurrency_key"),
    "key-not-text": ({"concurrency_key": 7, "concurrency_limit": 3}, "concurrency_key"),
}


@pytest.mark.parametrize(("group", "field"), INVALID_GROUPS.values(), ids=list(INVALID_GROUPS))
async def test_trigger_invalid_concurrency_group_is_400_naming_the_field(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, group: dict[str, Any], field: str
) -> None:
    before = await row_counts(api_db)

    response = await client.post(TRIGGER, json=body(**group))

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert field in detail, detail
    assert await row_counts(api_db) == before


async def test_bulk_trigger_item_with_half_a_group_is_400_naming_item_and_field(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    items: list[dict[str, Any]] = [body(args={"i": i}) for i in range(3)]
    items[1] = body(concurrency_key="partner-api")
    before = await row_counts(api_db)

    response = await client.post(BULK, json={"jobs": items})

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "jobs[1]" in detail, detail
    assert "concurrency_limit" in detail, detail
    assert await row_counts(api_db) == before


async def test_concurrency_group_is_stored_and_shown_in_status(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = f"partner-{uuid.uuid4()}"
    grouped = await client.post(
        TRIGGER, json=body(concurrency_key=key, concurrency_limit=MAX_CONCURRENCY_LIMIT)
    )
    plain = await client.post(TRIGGER, json=body())
    bulk = await client.post(BULK, json={"jobs": [body(concurrency_key=key, concurrency_limit=1)]})
    assert (grouped.status_code, plain.status_code, bulk.status_code) == (200, 200, 200), (
        grouped.text,
        plain.text,
        bulk.text,
    )

    shown = (await client.get(f"/api/v1/jobs/{grouped.json()['job_id']}/status")).json()
    assert (shown["concurrency_key"], shown["concurrency_limit"]) == (key, MAX_CONCURRENCY_LIMIT)
    shown = (await client.get(f"/api/v1/jobs/{plain.json()['job_id']}/status")).json()
    assert (shown["concurrency_key"], shown["concurrency_limit"]) == (None, None)
    bulk_id = uuid.UUID(bulk.json()["jobs"][0]["job_id"])
    row = await api_db.fetchrow(
        "SELECT concurrency_key, concurrency_limit FROM dl_jobs WHERE job_id = $1", bulk_id
    )
    assert tuple(row) == (key, 1)
