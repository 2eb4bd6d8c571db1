"""GET /metrics of a real API process, and the metrics port of a real worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from app.devserver.embedded_postgres import free_port
from tests.support.api_servers import ApiServer
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until
from tests.support.workers import worker_fleet

TRIGGER = "/api/v1/jobs/trigger"
API_FAMILIES = {
    "dataloader_http_requests",
    "dataloader_http_request_duration_seconds",
    "dataloader_database_up",
    "dataloader_jobs",
    "dataloader_jobs_finished_last_hour",
    "dataloader_queue_oldest_queued_age_seconds",
    "process_cpu_seconds",
    "python_gc_objects_collected",
}
WORKER_FAMILIES = {
    "dataloader_attempts_started",
    "dataloader_attempts_finished",
    "dataloader_job_duration_seconds",
    "dataloader_lock_busy",
    "dataloader_reaper_actions",
    "dataloader_schedule_fires",
}


def parse(text: str) -> dict[str, Metric]:
    """Families by name, as Prometheus would read them."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """The value of one sample (0 when the series does not exist yet)."""
    found = [
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, f"{sample}{labels} matches {len(found)} series"
    return found[0] if found else 0.0


def label_values(families: dict[str, Metric], family: str, label: str) -> set[str]:
    return {s.labels[label] for s in families[family].samples if label in s.labels}


async def scrape(client: httpx.AsyncClient, path: str = "/metrics") -> dict[str, Metric]:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def trigger(client: httpx.AsyncClient, queue: str, **fields: Any) -> str:
    body = {"queue": queue, "task": "noop", "lock_key": f"k-{uuid.uuid4()}", **fields}
    response = await client.post(TRIGGER, json=body)
    assert response.status_code == 200, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def test_metrics_api_counts_requests_and_reads_job_gauges_per_scrape(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = "etl.metrics-gauges"  # no worker serves it: its jobs stay queued
    before = await scrape(client)
    job_ids = [await trigger(client, queue) for _ in range(3)]
    status = await client.get(f"/api/v1/jobs/{job_ids[0]}/status")
    assert status.status_code == 200
    # One job has waited two minutes, one finished (failed) a moment ago.
    await api_db.execute(
        "UPDATE dl_jobs SET available_at = now() - interval '120 seconds' WHERE job_id = $1",
        uuid.UUID(job_ids[0]),
    )
    await api_db.execute(
        "UPDATE dl_jobs SET status = 'failed', finished_at = now() WHERE job_id = $1",
        uuid.UUID(job_ids[2]),
    )

    after = await scrape(client)

    assert set(after) >= API_FAMILIES, sorted(set(after))
    assert value(after, "dataloader_database_up") == 1
    route = {"method": "POST", "route": TRIGGER}
    moved = value(after, "dataloader_http_requests_total", **route, status="200") - value(
        before, "dataloader_http_requests_total", **route, status="200"
    )
    assert moved == 3
    timed = value(after, "dataloader_http_request_duration_seconds_count", **route) - value(
        before, "dataloader_http_request_duration_seconds_count", **route
    )
    assert timed == 3
    # Routes are labelled by their template, never by a job id.
    routes = label_values(after, "dataloader_http_requests", "route")
    assert any(r.startswith("/api/v1/jobs/{") and r.endswith("/status") for r in routes), routes
    assert not any(job_id in r for r in routes for job_id in job_ids)

    assert value(after, "dataloader_jobs", queue=queue, status="queued") == 2
    assert value(after, "dataloader_jobs", queue=queue, status="running") == 0
    assert value(after, "dataloader_jobs_finished_last_hour", queue=queue, status="failed") == 1
    assert value(after, "dataloader_jobs_finished_last_hour", queue=queue, status="lost") == 0
    age = value(after, "dataloader_queue_oldest_queued_age_seconds", queue=queue)
    assert 120 <= age < 180

    # The scrape itself is counted by the next one.
    again = await scrape(client)
    assert value(
        again, "dataloader_http_requests_total", method="GET", route="/metrics", status="200"
    ) > value(after, "dataloader_http_requests_total", method="GET", route="/metrics", status="200")


async def test_metrics_api_without_database_still_answers_with_database_up_zero(
    dead_db_client: httpx.AsyncClient,
) -> None:
    families = await scrape(dead_db_client)

    assert value(families, "dataloader_database_up") == 0
    assert "dataloader_jobs" not in families
    assert "process_cpu_seconds" in families
    assert "dataloader_http_requests" in families


def _noop_ok() -> dict[str, Any]:
    return {"steps": 1, "sleep": 0}


async def _wait_final(client: httpx.AsyncClient, job_ids: Iterable[str], diagnostics: Any) -> None:
    async def all_succeeded() -> bool:
        for job_id in job_ids:
            response = await client.get(f"/api/v1/jobs/{job_id}/status")
            if response.json()["status"] != "succeeded":
                return False
        return True

    await wait_until(all_succeeded, timeout=30, what="jobs to succeed", diagnostics=diagnostics)


async def test_worker_metrics_port_counts_attempts_outcomes_durations_and_lock_busy(
    client: httpx.AsyncClient, api_server: ApiServer, tmp_path: Path
) -> None:
    queue = "etl.metrics-worker"
    port = free_port()
    env = {"WORKER_METRICS_PORT": str(port), "WORKER_METRICS_HOST": "127.0.0.1"}
    with worker_fleet(PROJECT_ROOT, api_server.dsn, tmp_path / "workers") as fleet:
        await fleet.start_ready("metrics-1", queues={queue: 2}, env=env)
        ok = await trigger(client, queue, args=_noop_ok())
        retried = await trigger(
            client,
            queue,
            args={"steps": 1, "sleep": 0, "fail_at_step": 0, "fail_attempts": 1},
            max_attempts=2,
        )
        holder = await trigger(client, queue, args={"steps": 8, "sleep": 0.25}, lock_key="one")

        async def holder_running() -> bool:
            response = await client.get(f"/api/v1/jobs/{holder}/status")
            return bool(response.json()["status"] == "running")

        await wait_until(holder_running, timeout=15, what="holder running")
        waiter = await trigger(client, queue, args=_noop_ok(), lock_key="one")
        await _wait_final(client, [ok, retried, holder, waiter], fleet.diagnostics)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as worker:
            families = await scrape(worker)

    assert set(families) >= WORKER_FAMILIES, sorted(set(families))
    labels = {"queue": queue, "task": "noop"}
    assert value(families, "dataloader_attempts_started_total", **labels) == 5
    assert value(families, "dataloader_attempts_finished_total", **labels, outcome="succeeded") == 4
    assert value(families, "dataloader_attempts_finished_total", **labels, outcome="retried") == 1
    assert value(families, "dataloader_attempts_finished_total", **labels, outcome="failed") == 0
    assert value(families, "dataloader_job_duration_seconds_count", **labels) == 5
    # The holder slept 8 x 0.25 s: at least one attempt lasted two seconds or more.
    under_two = value(families, "dataloader_job_duration_seconds_bucket", **labels, le="1.0")
    assert under_two <= 4
    assert value(families, "dataloader_lock_busy_total") >= 1
    assert label_values(families, "dataloader_reaper_actions", "action") == {
        "requeued",
        "lost",
        "redispatched",
    }
    assert "fired" in label_values(families, "dataloader_schedule_fires", "outcome")
    # The API process shows none of the worker's families, and the other way round.
    api = await scrape(client)
    assert not WORKER_FAMILIES & set(api)
    assert "dataloader_http_requests" not in families
