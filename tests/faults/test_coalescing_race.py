"""Coalescing triggers racing over HTTP: one job for 200 at once, and no refresh lost under load.

First 200 concurrent coalescing triggers while nothing is queued: one job, and every answer
has its id. Then waves of coalescing triggers while two workers run the jobs of that one
key: each trigger either created a job or joined one that was still queued, so every job
a trigger was answered with ran after that trigger was sent (database clock), once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.checks import check_jobs, figures_line, report, wait_drained
from tests.support.api_servers import start_api_server, stop_api_server
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb
from tests.support.workers import E2E_PIPELINE_MODULES, WorkerFleet

QUEUE = "etl.refresh"
TRIGGERS = 200
WAVES = 10
WAVE_TRIGGERS = 40
WAVE_PAUSE_SEC = 0.15  # pacing the load: about a run's length between waves
BODY = {
    "queue": QUEUE,
    "task": "test.record",
    "args": {"steps": 1, "sleep": 0.05},
    "lock_key": "table:sales",
    "coalescing": True,
}
# The API checks task names: it loads test.record too.
PIPELINES_ENV = {"DL_PIPELINE_MODULES": json.dumps([E2E_PIPELINE_MODULES])}
# A job held back by a running job of its key, or by a joining trigger, comes back quickly.
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.05"}


async def _fire(http: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    answers = await asyncio.gather(
        *(http.post("/api/v1/jobs/trigger", json=BODY) for _ in range(count))
    )
    bad = [a.text for a in answers if a.status_code != 200]
    assert not bad, bad[:3]
    return [answer.json() for answer in answers]


async def test_coalescing_race_over_http(
    jobs_db: JobsDb,
    fleet: WorkerFleet,
    database_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await jobs_db.execute(RUN_LOG_DDL)
    server = await start_api_server(database_dsn, tmp_path / "api.log", PIPELINES_ENV)
    waves: list[tuple[datetime, list[dict[str, Any]]]] = []
    try:
        # Idle connections are dropped before the server's keep-alive timeout (5 s) ends
        # them: a request sent on one the server is closing at that moment fails to read.
        limits = httpx.Limits(
            max_connections=TRIGGERS, max_keepalive_connections=TRIGGERS, keepalive_expiry=1.0
        )
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
            began = time.monotonic()
            first = await _fire(http, TRIGGERS)
            race_sec = time.monotonic() - began
            rows = await jobs_db.scalar("SELECT count(*) FROM dl_jobs")
            dispatches = await jobs_db.scalar("SELECT count(*) FROM pgqueuer")
            [first_job] = {uuid.UUID(answer["job_id"]) for answer in first}
            first_events = Counter(await jobs_db.event_names(first_job))

            for name in ("w1", "w2"):
                fleet.start(name, queues={QUEUE: 2}, env=ENV)
            for worker in fleet.workers:
                await fleet.wait_ready(worker)
            for _ in range(WAVES):
                sent_at = await jobs_db.now()
                waves.append((sent_at, await _fire(http, WAVE_TRIGGERS)))
                await asyncio.sleep(WAVE_PAUSE_SEC)
        assert server.process.poll() is None, server.log_tail()
    finally:
        stop_api_server(server)

    answers = [answer for _, wave in waves for answer in wave]
    job_ids = {first_job} | {uuid.UUID(answer["job_id"]) for answer in answers}
    await wait_drained(jobs_db, len(job_ids), timeout=60, diagnostics=fleet.diagnostics)
    outcome = await check_jobs(jobs_db, job_ids)
    runs = {
        row["job_id"]: row["started_at"]
        for row in await jobs_db.fetch("SELECT job_id, started_at FROM e2e_runs")
    }
    # A trigger answered with a job that had already started would have lost its refresh.
    ran_before_asked = [
        (answer["job_id"], sent_at)
        for sent_at, wave in waves
        for answer in wave
        if runs[uuid.UUID(answer["job_id"])] <= sent_at
    ]
    coalesced_events = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events WHERE event = 'coalesced'"
    )
    trigger_open = await jobs_db.scalar(
        "SELECT count(*) FROM dl_job_events WHERE event = 'trigger_open'"
    )
    created = sum(answer["created"] for answer in answers)
    joined = sum(answer["coalesced"] for answer in answers)
    report(
        figures_line(
            "coalescing_race",
            outcome,
            recovery_sec=None,
            triggers=TRIGGERS + WAVES * WAVE_TRIGGERS,
            race_sec=f"{race_sec:.1f}",
            jobs=len(job_ids),
            under_load_created=created,
            under_load_joined=joined,
            trigger_open=trigger_open,
        ),
        capsys,
    )
    outcome.assert_clean(fleet.diagnostics())

    assert sum(answer["created"] for answer in first) == 1
    assert sum(answer["coalesced"] for answer in first) == TRIGGERS - 1
    assert (rows, dispatches) == (1, 1), "one row and one dispatch before any worker ran"
    assert first_events == {"queued": 1, "coalesced": TRIGGERS - 1}
    assert created + joined == WAVES * WAVE_TRIGGERS
    assert created == len(job_ids) - 1
    assert coalesced_events == TRIGGERS - 1 + joined
    assert ran_before_asked == []
    assert outcome.runs == len(job_ids)
