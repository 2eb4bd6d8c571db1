"""Logs of a real API process and a real worker: JSON lines, bound job fields, no secrets."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.support.api_servers import ApiServer
from tests.support.logs import log_records, non_json_lines
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until
from tests.support.workers import worker_fleet

QUEUE = "etl.logs"
ARG_SECRET = "hunter2-arg-secret"
NESTED_SECRET = "tok-nested-secret"
HEADER_SECRET = "bearer-header-secret"
QUERY_SECRET = "query-string-secret"
SECRETS = (ARG_SECRET, NESTED_SECRET, HEADER_SECRET, QUERY_SECRET)


async def test_logs_are_json_with_job_fields_and_never_show_secrets(
    client: httpx.AsyncClient, api_server: ApiServer, tmp_path: Path
) -> None:
    with worker_fleet(PROJECT_ROOT, api_server.dsn, tmp_path / "workers") as fleet:
        # DEBUG: the runner then logs each attempt's args, which must come out masked.
        worker = await fleet.start_ready("logs-1", queues={QUEUE: 1}, env={"LOG_LEVEL": "DEBUG"})
        response = await client.post(
            "/api/v1/jobs/trigger",
            json={
                "queue": QUEUE,
                "task": "noop",
                "lock_key": "customer-42",
                "idempotency_key": f"logs-{uuid.uuid4()}",
                "args": {
                    "steps": 1,
                    "sleep": 0,
                    "password": ARG_SECRET,
                    "nested": {"api_token": NESTED_SECRET},
                },
            },
            headers={"Authorization": f"Bearer {HEADER_SECRET}"},
        )
        assert response.status_code == 200, response.text
        job_id = response.json()["job_id"]
        status_path = f"/api/v1/jobs/{job_id}/status"

        async def succeeded() -> bool:
            answer = await client.get(status_path, params={"token": QUERY_SECRET})
            return bool(answer.json()["status"] == "succeeded")

        await wait_until(
            succeeded, timeout=30, what="job to succeed", diagnostics=fleet.diagnostics
        )

        def attempt_logged() -> bool:
            return any(
                r.get("job_id") == job_id and r["event"].startswith("attempt ended")
                for r in log_records(worker.log())
            )

        await wait_until(attempt_logged, timeout=10, what="attempt line", diagnostics=worker.tail)
        worker_log = worker.log()
    api_log = api_server.log_path.read_text()

    # Every line is one JSON object naming its process.
    assert non_json_lines(worker_log) == []
    assert non_json_lines(api_log) == []
    worker_records = log_records(worker_log)
    api_records = log_records(api_log)
    assert all(r["worker_id"] == "logs-1" for r in worker_records)
    assert all(r["instance_id"] and r["process"] == "api" for r in api_records)
    assert all({"timestamp", "level", "logger", "event"} <= set(r) for r in worker_records)

    # The attempt's lines carry the job's fields.
    [ended] = [r for r in worker_records if r["event"].startswith("attempt ended: succeeded")]
    assert ended["job_id"] == job_id
    assert ended["attempt"] == 1
    assert ended["queue"] == QUEUE
    assert ended["task"] == "noop"
    assert ended["worker_id"] == "logs-1"
    [started] = [r for r in worker_records if r["event"].startswith("attempt started")]
    assert started["job_args"]["password"] == "***"
    assert started["job_args"]["nested"] == {"api_token": "***"}
    assert started["job_args"]["steps"] == 1

    # The access log shows the query string masked.
    access = [r["event"] for r in api_records if r["logger"] == "uvicorn.access"]
    assert any(status_path in line and "token=***" in line for line in access), access

    for secret in SECRETS:
        assert secret not in worker_log, f"{secret} in the worker log"
        assert secret not in api_log, f"{secret} in the API log"
