"""A batch through real workers: its callback is an http.callback to a local server, sent
once every job of the batch has ended, with the counts in its body."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from app.db.engine import create_session_factory
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_batch_in_session
from tests.support.jobs_db import JobsDb
from tests.support.local_servers import LOOPBACK_CALLBACKS, RecordingHttpServer, http_server
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

JOBS = 20
FAILING = 5


@pytest.fixture
def server() -> Iterator[RecordingHttpServer]:
    with http_server() as server:
        yield server


async def test_a_batch_calls_back_once_after_its_last_job_with_the_counts(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    await fleet.start_ready(env=LOOPBACK_CALLBACKS)
    specs = [
        JobCreate(
            queue="etl.default",
            task="noop",
            args={"steps": 2, "sleep": 0.02, "fail": n < FAILING},
            lock_key=f"part-{n}",
            max_attempts=1,
        )
        for n in range(JOBS)
    ]
    callback = JobCreate(
        queue="etl.default",
        task="http.callback",
        args={"url": server.url("/loaded"), "data": {"table": "sales"}},
        lock_key="sales-loaded",
    )
    async with create_session_factory(jobs_db.engine)() as session, session.begin():
        batch = await enqueue_batch_in_session(session, specs, callback, jobs_db.settings)

    async def called_back() -> list[object] | None:
        return list(server.requests_to("/loaded")) or None

    await wait_until(called_back, timeout=60, what="the callback", diagnostics=fleet.diagnostics)
    fleet.stop_all()

    [request] = server.requests_to("/loaded")
    assert json.loads(request.body) == {
        "table": "sales",
        "batch": {
            "batch_id": str(batch.batch_id),
            "total": JOBS,
            "succeeded": JOBS - FAILING,
            "failed": FAILING,
            "canceled": 0,
            "lost": 0,
        },
    }
    # By the database's clock: the callback was created after the last job of the batch ended.
    rows = await jobs_db.fetch(
        "SELECT (SELECT max(finished_at) FROM dl_jobs WHERE batch_id = :b) AS last_end,"
        " (SELECT created_at FROM dl_jobs WHERE lock_key = 'sales-loaded') AS called,"
        " (SELECT count(*) FROM dl_jobs WHERE lock_key = 'sales-loaded') AS callbacks",
        b=batch.batch_id,
    )
    assert rows[0]["callbacks"] == 1
    assert rows[0]["called"] >= rows[0]["last_end"]
