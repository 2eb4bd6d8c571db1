"""A worker host cut off from the database past its job's lease, then reconnected.

The worker runs in a network namespace of its own (a separate "host") joined to the database's
host by a veth pair. With a long job running there, the link is cut: packets vanish, nobody
gets an error. The cut-off worker must stop its job before the server can free the job's
lock_key, another worker must take the job over once its lease expired, and when the link
comes back the cut-off worker's late writes must be rejected (fencing); it drops the stale
attempt and goes back to work.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.domain.spec import JobCreate
from tests.faults.checks import check_jobs, figures_line, report, wait_drained
from tests.support.e2e_pipelines import RUN_LOG_DDL
from tests.support.jobs_db import JobsDb, enqueue_all
from tests.support.logs import log_records
from tests.support.netns import NetworkNamespace, namespaces_available, network_namespace
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet, WorkerProcess, worker_fleet

QUEUE = "etl.partition"
CUT_HOST_QUEUE = "etl.cut-host"  # served by the cut-off worker alone
LOCK_KEY = "partitioned"
LONG_RUN = {"steps": 24, "sleep": 0.25}  # six seconds
SHORT_RUN = {"steps": 2, "sleep": 0.05}
LEASE_TTL_SEC = 3
SAME_KEY_JOBS = 3  # queued behind the long job, on its lock_key
OTHER_JOBS = 20  # other lock_keys, triggered during the cut
AFTER_RESTORE_JOBS = 10  # on the cut-off worker's own queue, once the link is back
ENV = {"DL_CLAIM_BACKOFF_SEC": "0.2"}


@pytest.fixture
def namespace() -> Iterator[NetworkNamespace]:
    reason = namespaces_available()
    if reason is not None:
        if os.environ.get("DL_REQUIRE_NETNS") == "1":
            pytest.fail(f"DL_REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)
    with network_namespace() as ns:
        yield ns


@pytest.fixture
async def postgres(namespace: NetworkNamespace, tmp_path: Path) -> AsyncIterator[PrivatePostgres]:
    async with private_postgres(
        tmp_path,
        listen=("127.0.0.1", namespace.host_address),
        client_networks=(namespace.network,),
    ) as server:
        yield server


@pytest.fixture
async def partition_db(postgres: PrivatePostgres) -> AsyncIterator[JobsDb]:
    async with postgres.jobs_db() as jobs_db:
        yield jobs_db


def _spec(args: dict[str, float], lock_key: str, queue: str = QUEUE) -> JobCreate:
    return JobCreate(
        queue=queue, task="test.record", args=args, lock_key=lock_key, lease_ttl_sec=LEASE_TTL_SEC
    )


def _fenced_lines(worker: WorkerProcess) -> list[str]:
    """The cut-off worker's log lines saying a late write found another attempt owning the job."""
    return [line["event"] for line in log_records(worker.log()) if "lease lost" in line["event"]]


@pytest.mark.timeout(300)
async def test_partitioned_worker_is_fenced_and_comes_back(
    namespace: NetworkNamespace,
    postgres: PrivatePostgres,
    partition_db: JobsDb,
    project_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs_db = partition_db
    await jobs_db.execute(RUN_LOG_DDL)
    with worker_fleet(project_root, postgres.dsn, tmp_path / "workers") as fleet:
        cut_off = await fleet.start_ready(
            "cut-off",
            queues={QUEUE: 4, CUT_HOST_QUEUE: 2},
            env={**ENV, "DATABASE_URL": postgres.dsn_at(namespace.host_address)},
            via=namespace.command,
        )
        [long_job] = await enqueue_all(jobs_db, [_spec(LONG_RUN, LOCK_KEY)])
        await jobs_db.wait_status(long_job, "running", timeout=30, diagnostics=fleet.diagnostics)
        same_key = await enqueue_all(
            jobs_db, [_spec(SHORT_RUN, LOCK_KEY) for _ in range(SAME_KEY_JOBS)]
        )
        await wait_until(
            lambda: jobs_db.scalar("SELECT count(*) FROM e2e_runs WHERE job_id = :id", id=long_job),
            timeout=30,
            what="the long job's body to start",
            diagnostics=fleet.diagnostics,
        )
        # Not a wait for a condition: cutting within a delayed ACK (~40 ms) of the last exchange
        # strands it, and the server then relies on tcp_user_timeout alone. Half a second lets
        # the session be idle, as in a real partition of an idle connection.
        await asyncio.sleep(0.5)

        cut_at = await jobs_db.now()
        cut_clock = time.monotonic()
        namespace.cut()
        try:
            peer = await fleet.start_ready("peer", queues={QUEUE: 4}, env=ENV)
            others = await enqueue_all(
                jobs_db, [_spec(SHORT_RUN, f"other-{i}") for i in range(OTHER_JOBS)]
            )
            taken_over = await _wait_taken_over(jobs_db, long_job, peer, fleet)
        finally:
            namespace.restore()
        restored_at = await jobs_db.now()
        cut_sec = time.monotonic() - cut_clock

        after = await enqueue_all(
            jobs_db,
            [_spec(SHORT_RUN, f"after-{i}", CUT_HOST_QUEUE) for i in range(AFTER_RESTORE_JOBS)],
        )
        expected = {long_job, *same_key, *others, *after}
        await wait_drained(jobs_db, len(expected), timeout=120, diagnostics=fleet.diagnostics)
        await wait_until(
            lambda: _fenced_lines(cut_off),
            timeout=60,
            what="the cut-off worker to find its late write rejected",
            diagnostics=fleet.diagnostics,
        )

        outcome = await check_jobs(jobs_db, expected)
        runs = await jobs_db.fetch(
            "SELECT attempt, worker_id, started_at, finished_at, stopped_at FROM e2e_runs"
            " WHERE job_id = :id ORDER BY id",
            id=long_job,
        )
        long_row = await jobs_db.job(long_job)
        late_events = await jobs_db.fetch(
            "SELECT event, attempt, at FROM dl_job_events WHERE job_id = :id"
            " AND details->>'worker_id' = 'cut-off' AND details->>'reaped_by' IS NULL"
            " AND at > :taken",
            id=long_job,
            taken=taken_over,
        )
        after_rows = await jobs_db.fetch(
            "SELECT worker_id, status, finished_at FROM dl_jobs WHERE queue = :q",
            q=CUT_HOST_QUEUE,
        )
        back_at = min(row["finished_at"] for row in after_rows)
        stale = runs[0]
        report(
            figures_line(
                "network_partition",
                outcome,
                recovery_sec=(back_at - restored_at).total_seconds(),
                cut_sec=f"{cut_sec:.1f}",
                body_stopped_after_cut_sec=_seconds(stale["stopped_at"], cut_at),
                taken_over_after_cut_sec=_seconds(taken_over, cut_at),
                late_writes_rejected=len(_fenced_lines(cut_off)),
                late_events_written=len(late_events),
            ),
            capsys,
        )
        outcome.assert_clean(fleet.diagnostics())
        assert [(r["attempt"], r["worker_id"]) for r in runs] == [(1, "cut-off"), (2, "peer")]
        assert stale["finished_at"] is None, "the cut-off worker stopped its attempt"
        assert stale["stopped_at"] < runs[1]["started_at"], "stopped before the takeover"
        assert (long_row["status"], long_row["attempt"], long_row["worker_id"]) == (
            "succeeded",
            2,
            "peer",
        )
        assert late_events == [], "no write of the stale attempt landed after the takeover"
        assert {(r["worker_id"], r["status"]) for r in after_rows} == {("cut-off", "succeeded")}
        assert cut_off.alive(), cut_off.tail()


async def _wait_taken_over(
    jobs_db: JobsDb, job_id: uuid.UUID, peer: WorkerProcess, fleet: WorkerFleet
) -> object:
    """Wait until another worker started the job's next attempt; when it did (database clock)."""

    async def started_elsewhere() -> object:
        rows = await jobs_db.fetch(
            "SELECT at FROM dl_job_events WHERE job_id = :id AND event = 'started'"
            " AND details->>'worker_id' = :peer",
            id=job_id,
            peer=peer.worker_id,
        )
        return rows[0]["at"] if rows else None

    return await wait_until(
        started_elsewhere,
        timeout=90,
        interval=0.2,
        what="the peer to take the cut-off worker's job over",
        diagnostics=fleet.diagnostics,
    )


def _seconds(later: object, earlier: object) -> str:
    return f"{(later - earlier).total_seconds():.1f}"  # type: ignore[operator]
