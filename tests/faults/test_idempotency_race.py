"""200 concurrent HTTP triggers with one idempotency_key make one job, which runs once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.checks import check_jobs, figures_line, report, wait_drained
from tests.support.api_servers import start_api_server, stop_api_server
from tests.support.jobs_db import JobsDb
from tests.support.workers import WorkerFleet

TRIGGERS = 200
BODY = {
    "queue": "etl.default",
    "task": "noop",
    "args": {"steps": 1, "sleep": 0},
    "lock_key": "race",
    "idempotency_key": "one-and-only",
}


async def test_idempotency_race_over_http(
    jobs_db: JobsDb,
    fleet: WorkerFleet,
    database_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = await start_api_server(database_dsn, tmp_path / "api.log")
    try:
        limits = httpx.Limits(max_connections=TRIGGERS, max_keepalive_connections=TRIGGERS)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
            began = time.monotonic()
            answers = await asyncio.gather(
                *(http.post("/api/v1/jobs/trigger", json=BODY) for _ in range(TRIGGERS))
            )
            elapsed = time.monotonic() - began
        assert server.process.poll() is None, server.log_tail()
    finally:
        stop_api_server(server)

    codes = sorted({answer.status_code for answer in answers})
    assert codes == [200], f"{codes}: {[a.text for a in answers if a.status_code != 200][:3]}"
    bodies = [answer.json() for answer in answers]
    job_ids = {body["job_id"] for body in bodies}
    created = sum(body["created"] for body in bodies)
    rows = await jobs_db.scalar("SELECT count(*) FROM dl_jobs")
    dispatches = await jobs_db.scalar("SELECT count(*) FROM pgqueuer")

    await fleet.start_ready("w1")
    await wait_drained(jobs_db, 1, timeout=30, diagnostics=fleet.diagnostics)
    [job_id] = [row["job_id"] for row in await jobs_db.fetch("SELECT job_id FROM dl_jobs")]
    outcome = await check_jobs(jobs_db, {job_id}, recorded=False)
    events = await jobs_db.event_names(job_id)
    report(
        figures_line(
            "idempotency_race",
            outcome,
            recovery_sec=None,
            triggers=TRIGGERS,
            distinct_job_ids=len(job_ids),
            created_true=created,
            rows=rows,
            dispatches=dispatches,
            trigger_sec=f"{elapsed:.1f}",
        ),
        capsys,
    )
    outcome.assert_clean()
    assert job_ids == {str(job_id)}
    assert created == 1, f"{created} answers said created"
    assert events == ["queued", "started", "succeeded"]
    assert (rows, dispatches) == (1, 1), "one row and one dispatch before any worker ran"
