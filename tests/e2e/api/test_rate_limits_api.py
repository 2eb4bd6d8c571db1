"""Rate limits over HTTP: PUT/GET a queue's limits, rate_key on jobs, 400s naming the field."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from app.domain.rate_limits import MAX_RATE_COUNT, MAX_RATE_PERIOD_SEC

TRIGGER = "/api/v1/jobs/trigger"
BULK = "/api/v1/jobs/trigger/bulk"


def limits_path(queue: str) -> str:
    return f"/api/v1/queues/{queue}/limits"


def unique_queue() -> str:
    return f"etl.rate-{uuid.uuid4().hex[:8]}"


def body(**overrides: object) -> dict[str, Any]:
    values: dict[str, Any] = {"queue": "etl.api", "task": "noop", "lock_key": "customer-1"}
    values.update(overrides)
    return values


async def test_limits_set_read_shown_and_removed(client: httpx.AsyncClient) -> None:
    queue = unique_queue()
    assert (await client.get(limits_path(queue))).json() == {"start": None, "per_rate_key": None}
    limits = {
        "start": {"count": 20, "period_sec": 1},
        "per_rate_key": {"count": 5, "period_sec": 0.5},
    }

    response = await client.put(limits_path(queue), json=limits)

    assert response.status_code == 200, response.text
    stored = {
        "start": {"count": 20, "period_sec": 1.0},
        "per_rate_key": {"count": 5, "period_sec": 0.5},
    }
    assert response.json() == stored
    assert (await client.get(limits_path(queue))).json() == stored
    assert (await client.get(f"/api/v1/queues/{queue}")).json()["limits"] == stored
    listed = {q["queue"]: q for q in (await client.get("/api/v1/queues")).json()["queues"]}
    assert listed[queue]["limits"] == stored
    # The body replaces both: what is left out is removed.
    response = await client.put(limits_path(queue), json={"per_rate_key": limits["per_rate_key"]})
    assert response.json() == {"start": None, "per_rate_key": stored["per_rate_key"]}
    response = await client.put(limits_path(queue), json={})
    assert response.json() == {"start": None, "per_rate_key": None}


# name: (the body sent, the field the 400 must name)
INVALID_LIMITS: dict[str, tuple[Any, str]] = {
    "count-zero": ({"start": {"count": 0, "period_sec": 1}}, "count"),
    "count-negative": ({"start": {"count": -5, "period_sec": 1}}, "count"),
    "count-over-max": ({"start": {"count": MAX_RATE_COUNT + 1, "period_sec": 1}}, "count"),
    "count-fraction": ({"start": {"count": 2.5, "period_sec": 1}}, "count"),
    "count-missing": ({"per_rate_key": {"period_sec": 1}}, "count"),
    "period-zero": ({"start": {"count": 1, "period_sec": 0}}, "period_sec"),
    "period-too-long": (
        {"per_rate_key": {"count": 1, "period_sec": MAX_RATE_PERIOD_SEC + 1}},
        "period_sec",
    ),
    "period-as-word": ({"start": {"count": 1, "period_sec": "1s"}}, "period_sec"),
    "period-missing": ({"start": {"count": 1}}, "period_sec"),
    "limit-not-object": ({"start": 20}, "start"),
    "unknown-field": ({"per_key": {"count": 1, "period_sec": 1}}, "per_key"),
    "not-an-object": ([1, 2], "object"),
}


@pytest.mark.parametrize(("sent", "field"), INVALID_LIMITS.values(), ids=list(INVALID_LIMITS))
async def test_invalid_limits_are_400_naming_the_field_and_change_nothing(
    client: httpx.AsyncClient, sent: Any, field: str
) -> None:
    queue = unique_queue()
    kept = {"start": {"count": 3, "period_sec": 1.0}, "per_rate_key": None}
    assert (await client.put(limits_path(queue), json=kept)).status_code == 200

    response = await client.put(limits_path(queue), json=sent)

    assert response.status_code == 400, response.text
    assert field in response.json()["detail"], response.text
    assert (await client.get(limits_path(queue))).json() == kept


async def test_limits_of_a_bad_queue_name_are_400_naming_queue(client: httpx.AsyncClient) -> None:
    response = await client.put(limits_path("bad%20name"), json={})

    assert response.status_code == 400, response.text
    assert "queue" in response.json()["detail"]


@pytest.mark.parametrize(
    "rate_key", ["", "   ", "k" * 501, "a\u0000b", 7], ids=["empty", "blank", "long", "nul", "int"]
)
async def test_trigger_with_a_bad_rate_key_is_400_naming_it(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, rate_key: object
) -> None:
    before = await api_db.fetchval("SELECT count(*) FROM dl_jobs")

    response = await client.post(TRIGGER, json=body(rate_key=rate_key))
    bulk = await client.post(BULK, json={"jobs": [body(), body(rate_key=rate_key)]})

    assert response.status_code == 400, response.text
    assert "rate_key" in response.json()["detail"]
    assert bulk.status_code == 400, bulk.text
    assert "jobs[1]" in bulk.json()["detail"]
    assert "rate_key" in bulk.json()["detail"]
    assert await api_db.fetchval("SELECT count(*) FROM dl_jobs") == before


async def test_rate_key_is_stored_and_shown_in_status(client: httpx.AsyncClient) -> None:
    keyed = await client.post(TRIGGER, json=body(rate_key="partner-a"))
    plain = await client.post(TRIGGER, json=body())
    assert (keyed.status_code, plain.status_code) == (200, 200), (keyed.text, plain.text)

    shown = (await client.get(f"/api/v1/jobs/{keyed.json()['job_id']}/status")).json()
    assert (shown["rate_key"], shown["waiting_for"]) == ("partner-a", None)
    shown = (await client.get(f"/api/v1/jobs/{plain.json()['job_id']}/status")).json()
    assert shown["rate_key"] is None
