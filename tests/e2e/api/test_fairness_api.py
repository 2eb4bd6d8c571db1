"""Fairness over HTTP: PUT/GET a queue's fairness, shown in the queue view, 400s naming `by`."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

TRIGGER = "/api/v1/jobs/trigger"


def fairness_path(queue: str) -> str:
    return f"/api/v1/queues/{queue}/fairness"


def unique_queue() -> str:
    return f"etl.fair-{uuid.uuid4().hex[:8]}"


async def test_fairness_set_read_shown_and_turned_off(client: httpx.AsyncClient) -> None:
    queue = unique_queue()
    assert (await client.get(fairness_path(queue))).json() == {"by": None}

    response = await client.put(fairness_path(queue), json={"by": "partition_key"})

    assert response.status_code == 200, response.text
    assert response.json() == {"by": "partition_key"}
    assert (await client.get(fairness_path(queue))).json() == {"by": "partition_key"}
    assert (await client.get(f"/api/v1/queues/{queue}")).json()["fairness"] == {
        "by": "partition_key"
    }
    listed = {q["queue"]: q for q in (await client.get("/api/v1/queues")).json()["queues"]}
    assert listed[queue]["fairness"] == {"by": "partition_key"}
    # Setting fairness leaves the queue's other settings alone, and the other way round.
    limits = {"start": {"count": 5, "period_sec": 1.0}, "per_rate_key": None}
    assert (await client.put(f"/api/v1/queues/{queue}/limits", json=limits)).is_success
    assert (await client.get(fairness_path(queue))).json() == {"by": "partition_key"}
    response = await client.put(fairness_path(queue), json={"by": None})
    assert response.json() == {"by": None}
    assert (await client.get(f"/api/v1/queues/{queue}")).json()["limits"] == limits
    assert (await client.put(fairness_path(queue), json={})).json() == {"by": None}


async def test_a_fair_queue_gives_its_jobs_turns_by_partition_key(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = unique_queue()
    assert (await client.put(fairness_path(queue), json={"by": "partition_key"})).is_success
    ids = []
    for tenant in ("A", "A", "A", "B"):
        body = {"queue": queue, "task": "noop", "lock_key": "k", "partition_key": tenant}
        response = await client.post(TRIGGER, json=body)
        assert response.status_code == 200, response.text
        ids.append(uuid.UUID(response.json()["job_id"]))

    rows = await api_db.fetch(
        """SELECT j.partition_key FROM pgqueuer d JOIN dl_jobs j ON j.pgq_job_id = d.id
           WHERE j.job_id = ANY($1) ORDER BY d.priority DESC, d.id""",
        ids,
    )
    assert [row["partition_key"] for row in rows] == ["A", "B", "A", "A"]


INVALID: dict[str, tuple[Any, str]] = {
    "unknown-field": ({"by": "partition_key", "weights": {"A": 2}}, "weights"),
    "other-field": ({"by": "lock_key"}, "by"),
    "not-text": ({"by": 1}, "by"),
    "not-an-object": (["partition_key"], "object"),
}


@pytest.mark.parametrize(("sent", "field"), INVALID.values(), ids=list(INVALID))
async def test_invalid_fairness_is_400_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, sent: Any, field: str
) -> None:
    queue = unique_queue()
    assert (await client.put(fairness_path(queue), json={"by": "partition_key"})).is_success

    response = await client.put(fairness_path(queue), json=sent)

    assert response.status_code == 400, response.text
    assert field in response.json()["detail"], response.text
    assert (await client.get(fairness_path(queue))).json() == {"by": "partition_key"}


async def test_fairness_of_a_bad_queue_name_is_400_naming_queue(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(fairness_path("bad%20name"), json={"by": None})

    assert response.status_code == 400, response.text
    assert "queue" in response.json()["detail"]
