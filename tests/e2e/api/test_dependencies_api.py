"""depends_on on POST /api/v1/jobs/trigger over real HTTP: the waiting status in the views,
listings and counts; every refusal a 400 (or 409) naming its field. No worker runs here."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

TRIGGER = "/api/v1/jobs/trigger"


async def trigger(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"queue": "etl.deps", "task": "noop", "lock_key": f"k-{uuid.uuid4().hex[:8]}"}
    response = await client.post(TRIGGER, json={**body, **fields})
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_dependencies_trigger_with_depends_on_is_waiting_and_shows_its_parents(
    client: httpx.AsyncClient,
) -> None:
    parent = (await trigger(client))["job_id"]

    created = await trigger(client, depends_on=[parent], run_after="any")

    assert (created["status"], created["created"]) == ("waiting", True)
    job = (await client.get(f"/api/v1/jobs/{created['job_id']}")).json()
    assert (job["status"], job["depends_on"], job["run_after"]) == ("waiting", [parent], "any")
    assert (job["canceled_by"], job["workflow_id"], job["step_name"]) == (None, None, None)
    plain = (await client.get(f"/api/v1/jobs/{parent}")).json()
    assert (plain["depends_on"], plain["run_after"]) == (None, "succeeded")


async def test_dependencies_waiting_jobs_are_listed_and_counted_apart(
    client: httpx.AsyncClient,
) -> None:
    parent = (await trigger(client, queue="etl.deps.count"))["job_id"]
    child = (await trigger(client, queue="etl.deps.count", depends_on=[parent]))["job_id"]

    listing = await client.get(
        "/api/v1/jobs", params={"status": "waiting", "queue": "etl.deps.count"}
    )
    counts = await client.get("/api/v1/jobs/counts", params={"queue": "etl.deps.count"})

    assert [job["job_id"] for job in listing.json()["jobs"]] == [child]
    assert (counts.json()["waiting"], counts.json()["due"]) == (1, 1)


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"depends_on": [str(uuid.UUID(int=5))]}, f"no job has the id {uuid.UUID(int=5)}"),
        ({"depends_on": ["not-an-id"]}, "`depends_on[0]`"),
        ({"run_after": "any"}, "run_after needs depends_on (field `run_after`)"),
        ({"run_after": "sometimes", "depends_on": []}, "`run_after`"),
    ],
)
async def test_dependencies_trigger_refuses_bad_dependencies_naming_the_field(
    client: httpx.AsyncClient, fields: dict[str, Any], detail: str
) -> None:
    body = {"queue": "etl.deps", "task": "noop", "lock_key": "bad", **fields}

    response = await client.post(TRIGGER, json=body)

    assert response.status_code == 400, response.text
    assert detail in response.json()["detail"]


async def test_dependencies_trigger_refuses_a_parent_twice_or_a_coalescing_dependent(
    client: httpx.AsyncClient,
) -> None:
    parent = (await trigger(client))["job_id"]
    body = {"queue": "etl.deps", "task": "noop", "lock_key": "bad"}

    twice = await client.post(TRIGGER, json={**body, "depends_on": [parent, parent]})
    coalescing = await client.post(
        TRIGGER, json={**body, "depends_on": [parent], "coalescing": True}
    )

    assert twice.status_code == coalescing.status_code == 400
    assert "(field `depends_on[1]`)" in twice.json()["detail"]
    assert "(field `coalescing`)" in coalescing.json()["detail"]


async def test_dependencies_bulk_trigger_names_the_item_with_an_unknown_parent(
    client: httpx.AsyncClient,
) -> None:
    unknown = uuid.uuid4()
    item = {"queue": "etl.deps", "task": "noop", "lock_key": "bulk"}

    response = await client.post(
        "/api/v1/jobs/trigger/bulk", json={"jobs": [item, {**item, "depends_on": [str(unknown)]}]}
    )

    assert response.status_code == 400, response.text
    assert response.json()["detail"] == (
        f"jobs[1]: no job has the id {unknown} (field `jobs[1].depends_on[0]`)"
    )


async def test_dependencies_retry_of_a_dependent_whose_parent_failed_is_a_409_naming_it(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    parent = (await trigger(client))["job_id"]
    child = (await trigger(client, depends_on=[parent]))["job_id"]
    await api_db.execute(
        "UPDATE dl_jobs SET status = 'failed', attempt = 1, finished_at = now() WHERE job_id = $1",
        uuid.UUID(parent),
    )
    canceled = (await client.get(f"/api/v1/jobs/{child}")).json()
    assert (canceled["status"], canceled["canceled_by"]) == ("canceled", parent)

    response = await client.post(f"/api/v1/jobs/{child}/retry")

    assert response.status_code == 409, response.text
    assert parent in response.json()["detail"]
    assert response.json()["job_status"] == "canceled"


async def test_dependencies_cancel_of_a_waiting_job_is_immediate(
    client: httpx.AsyncClient,
) -> None:
    parent = (await trigger(client))["job_id"]
    child = (await trigger(client, depends_on=[parent]))["job_id"]

    response = await client.post(f"/api/v1/jobs/{child}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
