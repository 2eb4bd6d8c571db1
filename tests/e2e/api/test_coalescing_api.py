"""Coalescing triggers over HTTP: join the queued job, say so, log it, refuse bad input.

No worker serves this module's API, so every job stays queued; a started job is not
joined: tests/e2e/test_coalescing.py, with a real worker.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

TRIGGER = "/api/v1/jobs/trigger"
BULK = "/api/v1/jobs/trigger/bulk"


def body(lock_key: str, **overrides: object) -> dict[str, Any]:
    values: dict[str, Any] = {
        "queue": "etl.api",
        "task": "noop",
        "lock_key": lock_key,
        "coalescing": True,
    }
    values.update(overrides)
    return values


def fresh_key() -> str:
    return f"table:{uuid.uuid4().hex[:12]}"


async def trigger(client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(TRIGGER, json=payload)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    answer.pop("warnings", None)  # no worker serves this module's queue
    return answer


async def events(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/jobs/{job_id}/events")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


async def test_coalescing_trigger_joins_the_queued_job_and_says_so(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = fresh_key()
    first = await trigger(client, body(key, args={"steps": 1}))
    second = await client.post(
        TRIGGER, json=body(key, args={"steps": 2}), headers={"X-Request-ID": "refresh-2"}
    )

    assert first == {
        "job_id": first["job_id"],
        "status": "queued",
        "created": True,
        "coalesced": False,
    }
    assert second.status_code == 200, second.text
    assert {k: v for k, v in second.json().items() if k != "warnings"} == {
        "job_id": first["job_id"],
        "status": "queued",
        "created": False,
        "coalesced": True,
        "differs": ["args"],
    }
    job = (await client.get(f"/api/v1/jobs/{first['job_id']}")).json()
    assert (job["args"], job["coalescing"]) == ({"steps": 1}, True)  # the job keeps its own
    history = await events(client, first["job_id"])
    assert [e["event"] for e in history] == ["queued", "coalesced"]
    assert history[1]["details"] == {"differs": ["args"], "request_id": "refresh-2"}
    count = await api_db.fetchval("SELECT count(*) FROM dl_jobs WHERE lock_key = $1", key)
    assert count == 1


async def test_triggers_that_do_not_coalesce_answer_and_behave_as_before(
    client: httpx.AsyncClient,
) -> None:
    key = fresh_key()
    coalescing = await trigger(client, body(key))
    plain = await trigger(client, body(key, coalescing=False))
    omitted = await client.post(
        TRIGGER, json={k: v for k, v in body(key).items() if k != "coalescing"}
    )

    assert plain == {"job_id": plain["job_id"], "status": "queued", "created": True}
    assert omitted.status_code == 200, omitted.text
    assert set(omitted.json()) == {"job_id", "status", "created", "warnings"}
    assert len({coalescing["job_id"], plain["job_id"], omitted.json()["job_id"]}) == 3
    plain_job = (await client.get(f"/api/v1/jobs/{plain['job_id']}")).json()
    assert plain_job["coalescing"] is False
    # The plain jobs are never joined: the next coalescing trigger finds the coalescing one.
    assert (await trigger(client, body(key)))["job_id"] == coalescing["job_id"]


async def test_bulk_items_coalesce_with_each_other_and_with_queued_jobs(
    client: httpx.AsyncClient,
) -> None:
    queued_key, new_key = fresh_key(), fresh_key()
    queued = await trigger(client, body(queued_key))

    response = await client.post(
        BULK,
        json={"jobs": [body(new_key), body(queued_key, priority=7), body(new_key)]},
        headers={"X-Request-ID": "bulk-1"},
    )

    assert response.status_code == 200, response.text
    first, joined, again = response.json()["jobs"]
    assert (first["created"], first["coalesced"]) == (True, False)
    assert (joined["job_id"], joined["coalesced"], joined["differs"]) == (
        queued["job_id"],
        True,
        ["priority"],
    )
    assert (again["job_id"], again["coalesced"], again["differs"]) == (first["job_id"], True, [])
    [logged] = [e for e in await events(client, queued["job_id"]) if e["event"] == "coalesced"]
    assert logged["details"] == {"differs": ["priority"], "request_id": "bulk-1", "item": 1}


async def test_idempotency_key_is_checked_first(client: httpx.AsyncClient) -> None:
    key = fresh_key()
    keyed = await trigger(client, body(key, idempotency_key=f"{key}:1"))
    again = await trigger(client, body(key, idempotency_key=f"{key}:1"))
    joined = await trigger(client, body(key, idempotency_key=f"{key}:2"))
    other_choice = await client.post(
        TRIGGER, json=body(key, idempotency_key=f"{key}:1", coalescing=False)
    )

    assert (again["job_id"], again["created"], again["coalesced"]) == (
        keyed["job_id"],
        False,
        False,
    )
    assert (joined["job_id"], joined["coalesced"]) == (keyed["job_id"], True)
    # The same key without coalescing is another request.
    assert other_choice.status_code == 409, other_choice.text
    assert other_choice.json()["job_id"] == keyed["job_id"]


INVALID = {
    "string": "yes",
    "string-true": "true",
    "number": 1,
    "null": None,
    "object": {},
}


@pytest.mark.parametrize("value", INVALID.values(), ids=list(INVALID))
async def test_trigger_coalescing_not_a_boolean_is_400_naming_the_field(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, value: object
) -> None:
    key = fresh_key()

    response = await client.post(TRIGGER, json=body(key, coalescing=value))

    assert response.status_code == 400, response.text
    assert "coalescing" in response.json()["detail"]
    assert await api_db.fetchval("SELECT count(*) FROM dl_jobs WHERE lock_key = $1", key) == 0


async def test_bulk_item_coalescing_not_a_boolean_is_400_naming_item_and_field(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = fresh_key()

    response = await client.post(BULK, json={"jobs": [body(key), body(key, coalescing="no")]})

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "jobs[1]" in detail, detail
    assert "coalescing" in detail, detail
    assert await api_db.fetchval("SELECT count(*) FROM dl_jobs WHERE lock_key = $1", key) == 0
