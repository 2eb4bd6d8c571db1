"""The whole service with DATABASE_URL through PgBouncer in transaction mode.

Every operation a user has goes over HTTP to the API and through real workers while their
pooled connections share a few PgBouncer server connections; the connections that need a
session (pgqueuer's LISTEN and the leader lock, the lock session, the job watch) use
DATABASE_DIRECT_URL. The last test checks that each connection took the path the plan gives it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import defaultdict
from typing import Any

import httpx

from app.db.connections import application_name
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.pooled_service import PooledService
from tests.support.waiting import wait_until

JOB_TIMEOUT_SEC = 30.0
LOCK_QUEUE = "etl.pooler-locks"
LOCK_JOBS = 120
LOCK_KEYS = 4
PAUSE_QUEUE = "etl.pooler-pause"
PAUSE_HOLD_SEC = 2.0  # how long a paused queue's job is watched staying queued


async def _trigger(client: httpx.AsyncClient, **spec: Any) -> str:
    """POST one job (a noop on etl.default unless told); its id."""
    body = {
        "queue": "etl.default",
        "task": "noop",
        "lock_key": f"pooler-{uuid.uuid4().hex[:8]}",
        "args": {"steps": 1, "sleep": 0.05},
        **spec,
    }
    answer = await client.post("/api/v1/jobs/trigger", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["job_id"])


async def _wait_status(
    client: httpx.AsyncClient, service: PooledService, job_id: str, *statuses: str
) -> dict[str, Any]:
    """Poll /status until the job has one of `statuses`; its view."""

    async def reached() -> dict[str, Any] | None:
        answer = await client.get(f"/api/v1/jobs/{job_id}/status")
        assert answer.status_code == 200, answer.text
        view: dict[str, Any] = answer.json()
        return view if view["status"] in statuses else None

    return await wait_until(
        reached,
        timeout=JOB_TIMEOUT_SEC,
        what=f"job {job_id} to be {'/'.join(statuses)}",
        diagnostics=service.diagnostics(),
    )


async def test_pooler_trigger_runs_a_job_and_status_shows_it(
    service: PooledService, client: httpx.AsyncClient
) -> None:
    job_id = await _trigger(client, args={"steps": 2, "sleep": 0.05})

    done = await _wait_status(client, service, job_id, "succeeded", "failed", "lost")
    job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
    events = (await client.get(f"/api/v1/jobs/{job_id}/events")).json()["events"]
    listing = await client.get("/api/v1/jobs", params={"lock_key": job["lock_key"]})
    ready = await client.get("/ready")

    assert done["status"] == "succeeded", job
    assert (job["attempt"], job["progress"]) == (1, {"processed": 2, "total": 2})
    assert [event["event"] for event in events] == ["queued", "started", "succeeded"]
    assert [row["job_id"] for row in listing.json()["jobs"]] == [job_id]
    assert ready.status_code == 200, ready.text


async def test_pooler_bulk_trigger_runs_every_job_once(
    service: PooledService, client: httpx.AsyncClient
) -> None:
    jobs = [
        {
            "queue": "etl.default",
            "task": "noop",
            "lock_key": f"pooler-bulk-{index % 10}",
            "idempotency_key": f"pooler-bulk-{uuid.uuid4().hex}",
            "args": {"steps": 1, "sleep": 0.01},
        }
        for index in range(100)
    ]

    first = await client.post("/api/v1/jobs/trigger/bulk", json={"jobs": jobs})
    again = await client.post("/api/v1/jobs/trigger/bulk", json={"jobs": jobs})
    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    ids = [job["job_id"] for job in first.json()["jobs"]]
    for job_id in ids:
        await _wait_status(client, service, job_id, "succeeded", "failed", "lost")
    statuses = await service.jobs_db.fetch(
        "SELECT status, count(*) AS n FROM dl_jobs WHERE job_id = ANY(:ids) GROUP BY status",
        ids=[uuid.UUID(job_id) for job_id in ids],
    )

    assert [job["job_id"] for job in again.json()["jobs"]] == ids, "the keys found the jobs"
    assert len(set(ids)) == len(jobs)
    assert {row["status"]: row["n"] for row in statuses} == {"succeeded": len(jobs)}


async def test_pooler_stream_follows_a_job_to_its_end(
    service: PooledService, client: httpx.AsyncClient
) -> None:
    job_id = await _trigger(client, args={"steps": 4, "sleep": 0.4})
    statuses: list[str] = []

    async def read() -> None:
        async with client.stream("GET", f"/api/v1/jobs/{job_id}/stream") as answer:
            assert answer.status_code == 200, await answer.aread()
            async for line in answer.aiter_lines():
                if line.startswith("data:"):
                    status = json.loads(line.removeprefix("data:"))["status"]
                    if not statuses or statuses[-1] != status:
                        statuses.append(status)

    await asyncio.wait_for(read(), JOB_TIMEOUT_SEC)

    # The job watch LISTENs on its direct session: through PgBouncer it would hear nothing,
    # and the stream would show the first view only.
    assert statuses[-1] == "succeeded", statuses
    assert "running" in statuses or statuses == ["succeeded"], statuses
    assert len(statuses) >= 2, f"the stream saw no change: {statuses}"


async def test_pooler_cancel_stops_a_running_job(
    service: PooledService, client: httpx.AsyncClient
) -> None:
    job_id = await _trigger(client, args={"steps": 300, "sleep": 0.1})
    await _wait_status(client, service, job_id, "running")

    answer = await client.post(f"/api/v1/jobs/{job_id}/cancel")
    done = await _wait_status(client, service, job_id, "canceled", "succeeded", "failed")

    assert answer.status_code == 200, answer.text
    assert done["status"] == "canceled", done


async def test_pooler_pause_holds_a_queue_until_resumed(
    service: PooledService, client: httpx.AsyncClient
) -> None:
    paused = await client.post(f"/api/v1/queues/{PAUSE_QUEUE}/pause")
    assert paused.status_code == 200, paused.text
    try:
        job_id = await _trigger(client, queue=PAUSE_QUEUE)
        await asyncio.sleep(PAUSE_HOLD_SEC)  # holding the pause for a set time
        held = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()
    finally:
        resumed = await client.post(f"/api/v1/queues/{PAUSE_QUEUE}/resume")
    done = await _wait_status(client, service, job_id, "succeeded", "failed", "lost")

    assert held["status"] == "queued", held
    assert resumed.status_code == 200, resumed.text
    assert done["status"] == "succeeded", done


async def test_pooler_schedule_fires_and_runs_on_demand(
    service: PooledService, client: httpx.AsyncClient
) -> None:
    name = f"pooler-{uuid.uuid4().hex[:8]}"
    lock_key = f"pooler-schedule-{name}"
    created = await client.post(
        "/api/v1/schedules",
        json={
            "name": name,
            "cron": "* * * * * *",
            "queue": "etl.default",
            "task": "noop",
            "lock_key": lock_key,
        },
    )
    assert created.status_code == 201, created.text

    async def fired() -> list[dict[str, Any]] | None:
        answer = await client.get("/api/v1/jobs", params={"lock_key": lock_key})
        jobs: list[dict[str, Any]] = answer.json()["jobs"]
        return jobs if len(jobs) >= 3 else None

    # The leader's scheduler fires through the worker pool, which goes through PgBouncer.
    await wait_until(
        fired, timeout=JOB_TIMEOUT_SEC, what="3 fires", diagnostics=service.diagnostics()
    )
    run_now = await client.post(f"/api/v1/schedules/{name}/run")
    disabled = await client.post(f"/api/v1/schedules/{name}/disable")
    jobs = (await client.get("/api/v1/jobs", params={"lock_key": lock_key})).json()["jobs"]
    for job in jobs:
        await _wait_status(client, service, job["job_id"], "succeeded", "failed", "lost")
    final = (await client.get("/api/v1/jobs", params={"lock_key": lock_key})).json()["jobs"]

    assert run_now.status_code in (200, 201), run_now.text
    assert run_now.json()["job"]["created"] is True
    assert disabled.status_code in (200, 201), disabled.text
    assert {job["status"] for job in final} == {"succeeded"}


async def test_pooler_lock_key_runs_never_overlap_across_workers(
    service: PooledService, client: httpx.AsyncClient
) -> None:
    jobs_db = service.jobs_db
    await jobs_db.execute(RUN_LOG_DDL)
    specs = [
        {
            "queue": LOCK_QUEUE,
            "task": "test.record",
            "lock_key": f"pooler-lock-{index % LOCK_KEYS}",
            "args": {"steps": 1, "sleep": 0.02},
        }
        for index in range(LOCK_JOBS)
    ]
    answer = await client.post("/api/v1/jobs/trigger/bulk", json={"jobs": specs})
    assert answer.status_code == 200, answer.text
    ids = [uuid.UUID(job["job_id"]) for job in answer.json()["jobs"]]

    async def drained() -> bool:
        left = await jobs_db.scalar(
            "SELECT count(*) FROM dl_jobs WHERE job_id = ANY(:ids)"
            " AND status NOT IN ('succeeded', 'failed', 'canceled', 'lost')",
            ids=ids,
        )
        return bool(left == 0)

    await wait_until(
        drained, timeout=90, what=f"{LOCK_JOBS} jobs to end", diagnostics=service.diagnostics()
    )
    statuses = await jobs_db.fetch(
        "SELECT status, count(*) AS n FROM dl_jobs WHERE job_id = ANY(:ids) GROUP BY status",
        ids=ids,
    )
    runs = await jobs_db.fetch(
        "SELECT j.lock_key, r.job_id, r.worker_id, r.started_at, r.finished_at"
        " FROM e2e_runs r JOIN dl_jobs j USING (job_id) WHERE r.job_id = ANY(:ids)",
        ids=ids,
    )
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_key[run["lock_key"]].append(run)
    overlaps = [
        f"{key}: {first['job_id']} on {first['worker_id']} until {first['finished_at']},"
        f" {second['job_id']} on {second['worker_id']} from {second['started_at']}"
        for key, members in by_key.items()
        for first, second in itertools.pairwise(sorted(members, key=lambda r: r["started_at"]))
        if first["finished_at"] is None or first["finished_at"] > second["started_at"]
    ]
    workers = {run["worker_id"] for run in runs}

    assert {row["status"]: row["n"] for row in statuses} == {"succeeded": LOCK_JOBS}
    assert len(runs) == LOCK_JOBS, "each job ran once"
    assert overlaps == [], "\n".join(overlaps[:20])
    assert len(workers) > 1, f"one worker ran everything: {workers}"


async def test_pooler_connections_take_their_planned_path(
    service: PooledService, client: httpx.AsyncClient
) -> None:
    """Pooled purposes reach PostgreSQL only through PgBouncer, session purposes never do."""
    # Make sure each purpose has had its reason to connect: a job run, a stream open.
    job_id = await _trigger(client, args={"steps": 3, "sleep": 0.3})
    async with client.stream("GET", f"/api/v1/jobs/{job_id}/stream") as answer:
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if line.startswith("data:") and '"succeeded"' in line:
                break
    database = service.direct_dsn.rsplit("/", 1)[1]
    through_bouncer = {
        row["application_name"]
        for row in await service.bouncer.show("CLIENTS")
        if row["database"] == database
    }
    bouncer_ports = {
        int(row["local_port"]) for row in await service.bouncer.show("SERVERS") if row["local_port"]
    }
    direct = {
        row["application_name"]
        for row in await service.jobs_db.fetch(
            "SELECT application_name, client_port FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        if row["client_port"] not in bouncer_ports and row["application_name"]
    }
    worker_ids = [worker.worker_id for worker in service.fleet.workers]
    pooled_names = {application_name("api pool")} | {
        application_name(purpose, worker_id)
        for worker_id in worker_ids
        for purpose in ("worker pool", "finish writer")
    }
    session_names = {application_name("job watch")} | {
        application_name(purpose, worker_id)
        for worker_id in worker_ids
        for purpose in ("pgqueuer", "lock session")
    }

    assert through_bouncer <= pooled_names, through_bouncer - pooled_names
    assert direct <= session_names, direct - session_names
    assert {application_name("finish writer", w) for w in worker_ids} <= through_bouncer
    assert application_name("api pool") in through_bouncer
    assert {application_name("pgqueuer", w) for w in worker_ids} <= direct
    assert {application_name("lock session", w) for w in worker_ids} <= direct
    assert application_name("job watch") in direct
