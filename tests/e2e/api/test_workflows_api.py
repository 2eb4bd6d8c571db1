"""/api/v1/workflows on a real server: a DAG created at once, its view, its cancel, and every
400 naming what is wrong. No worker runs here (tests/e2e/test_workflows.py runs them)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

WORKFLOWS = "/api/v1/workflows"


def step(name: str, *parents: str, **extra: Any) -> dict[str, Any]:
    job = {"queue": "etl.wf", "task": "noop", "lock_key": f"wf:{name}", **extra.pop("job", {})}
    found: dict[str, Any] = {"name": name, "job": job, **extra}
    if parents:
        found["depends_on"] = list(parents)
    return found


DIAMOND = [step("extract"), step("left", "extract"), step("right", "extract"),
           step("load", "left", "right")]  # fmt: skip


async def create(client: httpx.AsyncClient, steps: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.post(WORKFLOWS, json={"name": "nightly", "steps": steps})
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_workflows_create_answers_each_step_queued_or_waiting(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    created = await create(client, DIAMOND)

    assert created["name"] == "nightly"
    assert [(s["name"], s["status"]) for s in created["steps"]] == [
        ("extract", "queued"),
        ("left", "waiting"),
        ("right", "waiting"),
        ("load", "waiting"),
    ]
    rows = await api_db.fetch(
        "SELECT job_id, workflow_id, step_name FROM dl_jobs WHERE workflow_id = $1",
        uuid.UUID(created["workflow_id"]),
    )
    assert {r["step_name"]: str(r["job_id"]) for r in rows} == {
        s["name"]: s["job_id"] for s in created["steps"]
    }


async def test_workflows_get_shows_every_step_with_its_parents_by_name(
    client: httpx.AsyncClient,
) -> None:
    created = await create(client, DIAMOND)

    response = await client.get(f"{WORKFLOWS}/{created['workflow_id']}")

    assert response.status_code == 200, response.text
    view = response.json()
    assert (view["status"], view["counts"]) == ("active", {"queued": 1, "waiting": 3})
    steps = {s["name"]: s for s in view["steps"]}
    assert sorted(steps["load"]["depends_on"]) == ["left", "right"]
    assert steps["left"]["depends_on"] == ["extract"]
    assert steps["extract"]["depends_on"] == []
    for field in ("job_id", "attempt", "max_attempts", "started_at", "finished_at", "run_after"):
        assert field in steps["load"], field


async def test_workflows_cancel_ends_every_unfinished_step(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    created = await create(client, DIAMOND)

    response = await client.post(f"{WORKFLOWS}/{created['workflow_id']}/cancel")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "workflow_id": created["workflow_id"],
        "canceled": 4,
        "cancel_requested": 0,
    }
    view = (await client.get(f"{WORKFLOWS}/{created['workflow_id']}")).json()
    assert (view["status"], view["counts"]) == ("canceled", {"canceled": 4})
    assert view["canceled_at"] is not None
    root = uuid.UUID(created["steps"][0]["job_id"])
    assert (
        await api_db.fetchval("SELECT count(*) FROM pgqueuer WHERE payload = $1", root.bytes) == 0
    )


@pytest.mark.parametrize(
    ("steps", "detail"),
    [
        (
            [step("a", "c"), step("b", "a"), step("c", "b")],
            "the steps depend on each other in a cycle: b -> c -> a -> b (each waits for the one"
            " before it) (field `steps`)",
        ),
        (
            [step("a"), step("b", "a", "missing")],
            "no step is named 'missing', and it is not a job id (field `steps[1].depends_on[1]`)",
        ),
        ([step("a"), step("a")], "step name 'a' is taken by steps[0] (field `steps[1].name`)"),
        (
            [step("a", job={"task": "no.such.task"})],
            "steps[0].job: unknown task 'no.such.task'",
        ),
        (
            [step("a", job={"idempotency_key": "once"})],
            "(field `steps[0].job.idempotency_key`)",
        ),
        ([], "(field `steps`)"),
        ([step("a", run_after="later", depends_on=["b"]), step("b")], "`steps[0].run_after`"),
    ],
)
async def test_workflows_create_refuses_a_bad_workflow_with_a_400_naming_it(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, steps: Any, detail: str
) -> None:
    before = await api_db.fetchval("SELECT count(*) FROM dl_workflows")

    response = await client.post(WORKFLOWS, json={"name": "broken", "steps": steps})

    assert response.status_code == 400, response.text
    assert detail in response.json()["detail"]
    assert await api_db.fetchval("SELECT count(*) FROM dl_workflows") == before


async def test_workflows_create_refuses_a_dependency_on_an_unknown_job_naming_it(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    unknown = uuid.uuid4()
    before = await api_db.fetchval("SELECT count(*) FROM dl_jobs")

    response = await client.post(
        WORKFLOWS, json={"name": "x", "steps": [step("a"), step("b", "a", str(unknown))]}
    )

    assert response.status_code == 400, response.text
    assert response.json()["detail"] == (
        f"no job has the id {unknown} (field `steps[1].depends_on[1]`)"
    )
    assert await api_db.fetchval("SELECT count(*) FROM dl_jobs") == before


async def test_workflows_a_step_may_depend_on_a_job_outside_the_workflow(
    client: httpx.AsyncClient,
) -> None:
    outside = await client.post(
        "/api/v1/jobs/trigger", json={"queue": "etl.wf", "task": "noop", "lock_key": "outside"}
    )
    outside_id = outside.json()["job_id"]

    created = await create(client, [step("after", outside_id)])

    view = (await client.get(f"{WORKFLOWS}/{created['workflow_id']}")).json()
    assert view["steps"][0]["depends_on"] == [outside_id]
    assert view["steps"][0]["status"] == "waiting"


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        (f"{WORKFLOWS}/{uuid.UUID(int=1)}", 404, f"workflow {uuid.UUID(int=1)} not found"),
        (f"{WORKFLOWS}/not-a-uuid", 400, "workflow_id 'not-a-uuid' is not a UUID"),
    ],
)
async def test_workflows_get_unknown_or_malformed_id(
    client: httpx.AsyncClient, path: str, status: int, detail: str
) -> None:
    response = await client.get(path)

    assert response.status_code == status, response.text
    assert response.json()["detail"] == detail


async def test_workflows_cancel_unknown_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{WORKFLOWS}/{uuid.UUID(int=2)}/cancel")

    assert response.status_code == 404, response.text


async def test_workflows_create_again_with_its_key_answers_the_same_workflow(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    body = {"name": "nightly", "idempotency_key": f"k-{uuid.uuid4()}", "steps": DIAMOND}
    first = await client.post(WORKFLOWS, json=body)
    # The answer was lost, say: the client sends it again.
    again = await client.post(WORKFLOWS, json=body)

    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["created"] is True
    assert again.json()["created"] is False
    assert again.json()["workflow_id"] == first.json()["workflow_id"]
    assert again.json()["steps"] == first.json()["steps"]
    count = await api_db.fetchval(
        "SELECT count(*) FROM dl_jobs WHERE workflow_id = $1",
        uuid.UUID(first.json()["workflow_id"]),
    )
    assert count == len(DIAMOND)


async def test_workflows_create_with_a_key_taken_by_another_request_is_a_409(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = f"k-{uuid.uuid4()}"
    first = await client.post(
        WORKFLOWS, json={"name": "a", "idempotency_key": key, "steps": DIAMOND}
    )
    before = await api_db.fetchval("SELECT count(*) FROM dl_jobs")

    response = await client.post(
        WORKFLOWS, json={"name": "b", "idempotency_key": key, "steps": [step("only")]}
    )

    assert response.status_code == 409, response.text
    workflow_id = first.json()["workflow_id"]
    assert response.json()["workflow_id"] == workflow_id
    assert response.json()["detail"] == (
        f"idempotency_key {key!r} is already used by workflow {workflow_id}, created from a"
        " different request; send the same request to get that workflow, or use another key"
        " (field `idempotency_key`)"
    )
    assert await api_db.fetchval("SELECT count(*) FROM dl_jobs") == before


@pytest.mark.parametrize("key", ["", "x" * 501, 7])
async def test_workflows_create_refuses_a_bad_key_naming_it(
    client: httpx.AsyncClient, key: object
) -> None:
    response = await client.post(
        WORKFLOWS, json={"name": "a", "idempotency_key": key, "steps": [step("only")]}
    )

    assert response.status_code == 400, response.text
    assert "idempotency_key" in response.json()["detail"]


async def test_workflows_list_pages_newest_first_with_status_and_counts(
    client: httpx.AsyncClient,
) -> None:
    name = f"listed-{uuid.uuid4().hex[:8]}"
    made = []
    for _ in range(3):
        response = await client.post(WORKFLOWS, json={"name": name, "steps": DIAMOND})
        made.append(response.json()["workflow_id"])
    canceled = made[0]
    await client.post(f"{WORKFLOWS}/{canceled}/cancel")

    first = await client.get(WORKFLOWS, params={"name": name, "limit": 2})
    second = await client.get(
        WORKFLOWS, params={"name": name, "limit": 2, "cursor": first.json()["next_cursor"]}
    )

    assert first.status_code == second.status_code == 200, first.text + second.text
    listed = first.json()["workflows"] + second.json()["workflows"]
    assert [w["workflow_id"] for w in listed] == made[::-1]
    assert second.json()["next_cursor"] is None
    newest = listed[0]
    assert newest["status"] == "active"
    assert newest["counts"] == {"queued": 1, "waiting": 3}
    assert newest["step_count"] == 4
    assert newest["name"] == name
    assert "steps" not in newest
    oldest = listed[-1]
    assert oldest["status"] == "canceled"
    assert oldest["counts"] == {"canceled": 4}
    assert oldest["canceled_at"] is not None


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"cursor": "not-a-cursor"}, "invalid cursor (query parameter `cursor`)"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"name": ""}, "name"),
    ],
)
async def test_workflows_list_refuses_a_bad_query_naming_it(
    client: httpx.AsyncClient, params: dict[str, Any], detail: str
) -> None:
    response = await client.get(WORKFLOWS, params=params)

    assert response.status_code == 400, response.text
    assert detail in response.json()["detail"]
