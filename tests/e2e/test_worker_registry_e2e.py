"""The worker registry end to end: real `pgq run` workers and `python -m app serve` on one
database, with a short liveness window (DL_WORKER_REFRESH_SEC=0.5: live within 1.5 s)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app import __version__
from tests.support.api_servers import ApiServer, api_server_on_fresh_database
from tests.support.databases import TestServer as PgServer
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet, worker_fleet

REFRESH = {"DL_WORKER_REFRESH_SEC": "0.5"}
TRIGGER = "/api/v1/jobs/trigger"


def unserved(queue: str) -> str:
    return f"no live worker serves queue {queue!r}; the job waits until one does"


@pytest.fixture(scope="module")
async def api(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """The API knows the test pipelines (test.echo), which the workers do not load."""
    env = {**REFRESH, "DL_PIPELINE_MODULES": json.dumps(["tests.support.pipelines"])}
    async with api_server_on_fresh_database(
        pg_server, template_db, tmp_path_factory.mktemp("registry"), extra_env=env
    ) as server:
        yield server


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def workers(project_root: Path, api: ApiServer, tmp_path: Path) -> Iterator[WorkerFleet]:
    with worker_fleet(project_root, api.dsn, tmp_path / "workers", env=REFRESH) as fleet:
        yield fleet


async def listed(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/v1/workers")
    assert response.status_code == 200, response.text
    return {worker["worker_id"]: worker for worker in response.json()["workers"]}


def job(queue: str, task: str = "noop", **fields: Any) -> dict[str, Any]:
    return {"queue": queue, "task": task, "args": {}, "lock_key": f"k-{uuid.uuid4()}", **fields}


async def test_workers_lists_a_started_worker_and_drops_it_after_a_clean_stop(
    client: httpx.AsyncClient, workers: WorkerFleet
) -> None:
    worker = await workers.start_ready("reg-clean", queues={"reg.one": 2, "reg.two": 0})

    entry = (await listed(client))["reg-clean"]

    assert set(entry) == {
        "worker_id",
        "host",
        "pid",
        "version",
        "queues",
        "tasks",
        "started_at",
        "last_seen_at",
        "leader",
    }
    assert (entry["pid"], entry["version"]) == (worker.pid, __version__)
    assert entry["queues"] == [
        {"queue": "reg.one", "concurrency": 2},
        {"queue": "reg.two", "concurrency": 0},
    ]
    assert {"noop", "http.callback", "test.crash"} <= set(entry["tasks"])
    assert entry["tasks"] == sorted(entry["tasks"])
    assert "test.echo" not in entry["tasks"]
    # The one start line says what this worker serves and runs.
    assert (
        "registered: queues reg.one (concurrency 2), reg.two (concurrency 0); tasks "
        in worker.log()
    )
    assert "test.crash" in worker.log()

    async def leads() -> bool:
        return bool((await listed(client))["reg-clean"]["leader"])

    await wait_until(leads, timeout=20, what="the lone worker to lead", diagnostics=worker.tail)

    worker.terminate()
    assert await worker.wait_exit(timeout=20) == 0
    assert "reg-clean" not in await listed(client)


async def test_workers_drops_a_killed_worker_after_the_liveness_window(
    client: httpx.AsyncClient, workers: WorkerFleet, api: ApiServer
) -> None:
    worker = await workers.start_ready("reg-killed", queues={"reg.killed": 1})
    assert "reg-killed" in await listed(client)

    worker.kill()
    await worker.wait_exit(timeout=10)

    async def gone() -> bool:
        return "reg-killed" not in await listed(client)

    await wait_until(gone, timeout=15, what="the killed worker to leave the list")
    # Left by expiry: its row is still there (the leader's retention deletes it much later).
    db = await asyncpg.connect(api.dsn)
    try:
        assert await db.fetchval("SELECT count(*) FROM dl_workers WHERE worker_id = 'reg-killed'")
    finally:
        await db.close()


async def test_tasks_lists_the_tasks_of_live_workers_with_schemas_and_queues(
    client: httpx.AsyncClient, workers: WorkerFleet
) -> None:
    await workers.start_ready("reg-tasks-1", queues={"reg.t1": 1})
    await workers.start_ready("reg-tasks-2", queues={"reg.t2": 1})

    response = await client.get("/api/v1/tasks")

    assert response.status_code == 200, response.text
    tasks = {task["task"]: task for task in response.json()["tasks"]}
    assert list(tasks) == sorted(tasks)
    assert set(tasks["noop"]) == {"task", "args_schema", "workers", "queues"}
    assert (tasks["noop"]["workers"], tasks["noop"]["queues"]) == (2, ["reg.t1", "reg.t2"])
    assert tasks["noop"]["args_schema"] is None  # free-form args, checked by a function
    schema = tasks["http.callback"]["args_schema"]
    assert schema["$ref"] == "#/$defs/HttpCallbackArgs"
    assert "url" in schema["$defs"]["HttpCallbackArgs"]["required"]
    assert "test.echo" not in tasks


async def test_trigger_to_an_unserved_queue_succeeds_with_a_warning(
    client: httpx.AsyncClient, workers: WorkerFleet
) -> None:
    await workers.start_ready("reg-trigger", queues={"reg.served": 1})

    alone = await client.post(TRIGGER, json=job("reg.nobody"))

    assert alone.status_code == 200, alone.text
    assert alone.json()["warnings"] == [unserved("reg.nobody")]
    assert alone.json()["created"] is True
    # The served queue: no warning once the cached view (a few seconds at most) has the worker.
    served = job("reg.served", idempotency_key=f"i-{uuid.uuid4()}")

    async def quiet() -> bool:
        response = await client.post(TRIGGER, json=served)
        assert response.status_code == 200, response.text
        return "warnings" not in response.json()

    await wait_until(quiet, timeout=15, what="a trigger to a served queue without warning")

    bulk = await client.post(
        TRIGGER + "/bulk",
        json={
            "jobs": [job("reg.nobody"), job("reg.served"), job("reg.nobody2"), job("reg.nobody")]
        },
    )

    assert bulk.status_code == 200, bulk.text
    assert bulk.json()["warnings"] == [unserved("reg.nobody"), unserved("reg.nobody2")]
    assert [item["created"] for item in bulk.json()["jobs"]] == [True] * 4


async def test_queues_show_consumers_and_flag_a_backlog_nobody_serves(
    client: httpx.AsyncClient, workers: WorkerFleet
) -> None:
    await workers.start_ready("reg-queues", queues={"reg.q.served": 1})
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for queue in ("reg.q.served", "reg.q.orphan"):
        response = await client.post(TRIGGER, json=job(queue, available_at=later))
        assert response.status_code == 200, response.text

    response = await client.get("/api/v1/queues")

    assert response.status_code == 200, response.text
    views = {view["queue"]: view for view in response.json()["queues"]}
    served, orphan = views["reg.q.served"], views["reg.q.orphan"]
    assert (served["queued"], served["consumers"], served["unserved"]) == (1, 1, False)
    assert (orphan["queued"], orphan["consumers"], orphan["unserved"]) == (1, 0, True)


async def test_a_job_whose_task_no_worker_registered_fails_after_one_attempt(
    client: httpx.AsyncClient, workers: WorkerFleet
) -> None:
    worker = await workers.start_ready("reg-lacks", queues={"reg.lacks": 1})
    created = await client.post(TRIGGER, json=job("reg.lacks", "test.echo", max_attempts=5))
    assert created.status_code == 200, created.text
    job_id = created.json()["job_id"]

    async def failed() -> dict[str, Any] | None:
        body = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        return body if body["status"] in {"failed", "succeeded", "lost"} else None

    ended = await wait_until(failed, timeout=30, what="the job to end", diagnostics=worker.tail)

    assert (ended["status"], ended["attempt"]) == ("failed", 1)
    assert ended["error"].startswith(
        "TaskNotRegisteredError: task 'test.echo' is not registered on worker reg-lacks"
        " (registered: "
    )
    assert ended["error"].endswith(", nor on any live worker serving queue 'reg.lacks'")
    events = (await client.get(f"/api/v1/jobs/{job_id}/events")).json()["events"]
    assert [event["event"] for event in events].count("started") == 1
