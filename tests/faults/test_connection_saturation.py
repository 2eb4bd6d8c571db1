"""PostgreSQL out of connection slots (SQLSTATE 53300): the API answers 503, workers wait.

A private server with a small `max_connections` is filled to the last slot by the test; a
process's own connection is then ended, so its next statement needs a new one and meets a
full server, as after a restart under a large fleet. Nothing may answer 500, no job may be
left `running`, and once slots free up everything carries on by itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.api_servers import ApiServer, start_api_server, stop_api_server
from tests.support.jobs_db import JobsDb
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet, worker_fleet

# Room for the test's own pool, one API or one worker, and the fillers.
MAX_CONNECTIONS = 40
# Long enough to end the finish writer's connection and fill its slot while it runs.
RUN_ARGS = {"steps": 40, "sleep": 0.1}
LISTING = "/api/v1/jobs?limit=5"


@dataclass
class SlotFiller:
    """Holds every free connection slot of a server, and gives them back."""

    dsn: str
    held: list[asyncpg.Connection] = field(default_factory=list)

    async def fill(self) -> None:
        """Connect until the server refuses: then no slot is left for anyone."""
        while True:
            try:
                self.held.append(await asyncpg.connect(self.dsn))
            except asyncpg.TooManyConnectionsError:
                return

    async def evict(self, application_name_like: str) -> None:
        """End the connections so named and take their slots, so they cannot come back."""
        assert self.held, "fill() first: a slot is needed to look and to terminate"
        for _ in range(20):
            ended = await self.held[0].fetchval(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE application_name LIKE $1",
                application_name_like,
            )
            await self.fill()
            if ended == 0:
                return
        raise AssertionError(f"connections {application_name_like!r} kept coming back")

    async def release(self) -> None:
        """Give every slot back."""
        held, self.held = self.held, []
        for connection in held:
            with contextlib.suppress(Exception):
                await connection.close()


@pytest.fixture
async def small_server(tmp_path: Path) -> AsyncIterator[PrivatePostgres]:
    settings = {"max_connections": str(MAX_CONNECTIONS)}
    async with private_postgres(tmp_path, settings=settings) as postgres:
        yield postgres


@pytest.fixture
async def small_db(small_server: PrivatePostgres) -> AsyncIterator[JobsDb]:
    async with small_server.jobs_db() as jobs_db:
        yield jobs_db


@pytest.fixture
async def filler(small_server: PrivatePostgres) -> AsyncIterator[SlotFiller]:
    slots = SlotFiller(small_server.dsn)
    yield slots
    await slots.release()


@pytest.fixture
async def small_api(small_server: PrivatePostgres, tmp_path: Path) -> AsyncIterator[ApiServer]:
    server = await start_api_server(small_server.dsn, tmp_path / "api.log")
    yield server
    stop_api_server(server)


@pytest.mark.timeout(120)
async def test_api_answers_503_with_retry_after_while_slots_are_exhausted(
    small_api: ApiServer, filler: SlotFiller
) -> None:
    async with httpx.AsyncClient(base_url=small_api.base_url, timeout=60) as http:
        assert (await http.get(LISTING)).status_code == 200  # the pool holds a connection
        await filler.fill()
        await filler.evict("dataloader api pool%")

        answers = [
            await http.get(LISTING),
            await http.post(
                "/api/v1/jobs/trigger",
                json={"queue": "etl.default", "task": "noop", "args": {}, "lock_key": "k"},
            ),
        ]
        for answer in answers:
            assert answer.status_code == 503, (answer.text, small_api.log_tail())
            assert int(answer.headers["Retry-After"]) > 0
            assert answer.json() == {
                "status_code": 503,
                "detail": "database unavailable",
                "retry_after_sec": int(answer.headers["Retry-After"]),
                "request_id": answer.headers["X-Request-ID"],
            }, "the database's own message stays in the log"
        assert (await http.get("/ready")).status_code == 503

        await filler.release()

        async def recovered() -> bool:
            return (await http.get(LISTING)).status_code == 200

        await wait_until(recovered, timeout=30, what="the API to answer again")
    assert "too many clients already" in small_api.log_path.read_text(), "the cause is logged"


@pytest.mark.timeout(180)
async def test_final_write_waits_for_a_free_slot_and_the_job_runs_once(
    small_server: PrivatePostgres,
    small_db: JobsDb,
    filler: SlotFiller,
    project_root: Path,
    tmp_path: Path,
) -> None:
    with worker_fleet(project_root, small_server.dsn, tmp_path / "workers") as fleet:
        worker = await fleet.start_ready("w1")
        job_id = await small_db.enqueue("noop", RUN_ARGS)
        await small_db.wait_status(job_id, "running", timeout=30, diagnostics=fleet.diagnostics)

        await filler.fill()
        await filler.evict("dataloader finish writer %")
        # The pipeline ends meanwhile; its final write needs a new connection, and is
        # refused (53300) until the slots come back.
        await _wait_log(fleet, "finishing 1 attempt(s): database unreachable", count=2)
        assert (await small_db.job(job_id))["status"] == "running"

        await filler.release()
        row = await small_db.wait_status(
            job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics
        )
        assert row["attempt"] == 1, "the pipeline ran once: its outcome was kept, not lost"
        assert (await small_db.event_names(job_id)).count("started") == 1
        assert worker.alive(), worker.tail()


@pytest.mark.timeout(180)
async def test_worker_connects_and_starts_jobs_once_slots_free(
    small_server: PrivatePostgres,
    small_db: JobsDb,
    filler: SlotFiller,
    project_root: Path,
    tmp_path: Path,
) -> None:
    """A refused login, at the worker's start and at the lock session's reconnect."""
    job_id = await small_db.enqueue("noop", {"steps": 1, "sleep": 0})
    with worker_fleet(project_root, small_server.dsn, tmp_path / "workers") as fleet:
        first = await fleet.start_ready("w1")
        await small_db.wait_status(job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics)

        # A job whose start needs the lock session back, and a second worker starting.
        await filler.fill()
        await filler.evict("dataloader lock session %")
        second = fleet.start("w2")
        job_id = await small_db.enqueue("noop", {"steps": 1, "sleep": 0})  # its pool's slot
        await _wait_log(fleet, "lock session cannot reach the database", count=1)
        await _wait_log(fleet, f"starting job {job_id}: database unreachable", count=2)
        assert (await small_db.job(job_id))["status"] == "queued"

        await filler.release()
        row = await small_db.wait_status(
            job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics
        )
        assert row["attempt"] == 1
        # Its dispatch waited in the worker: pgqueuer never saw an error, and the reaper
        # never had to dispatch the job again.
        assert "redispatched" not in await small_db.event_names(job_id)
        await fleet.wait_ready(second, timeout=60)
        assert first.alive(), fleet.diagnostics()
        assert second.alive(), fleet.diagnostics()


async def _wait_log(fleet: WorkerFleet, line: str, *, count: int) -> None:
    def seen() -> bool:
        return sum(worker.log().count(line) for worker in fleet.workers) >= count

    await wait_until(
        seen, timeout=40, what=f"{count} x {line!r} in the logs", diagnostics=fleet.diagnostics
    )
