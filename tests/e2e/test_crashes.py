"""Workers that die or hang: leases expire, the reaper requeues, fencing stops stale runners."""

from __future__ import annotations

import signal
import uuid

from tests.support.jobs_db import JobsDb
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet, WorkerProcess

FINISHING_EVENTS = {"succeeded", "failed", "canceled", "retry_scheduled", "interrupted"}


async def _wait_leader(fleet: WorkerFleet, worker: WorkerProcess) -> None:
    await wait_until(
        lambda: "became maintenance leader" in worker.log(),
        timeout=10,
        what=f"{worker.worker_id} to lead maintenance",
        diagnostics=fleet.diagnostics,
    )


async def _running_with_progress(jobs_db: JobsDb, job_id: uuid.UUID, fleet: WorkerFleet) -> str:
    """Wait until the job's first progress is saved; returns the worker running it."""

    async def started() -> str | None:
        row = await jobs_db.job(job_id)
        return row["worker_id"] if row["status"] == "running" and row["progress"] else None

    worker_id: str = await wait_until(
        started, timeout=15, what="first progress", diagnostics=fleet.diagnostics
    )
    return worker_id


async def _wait_requeued_behind_the_lock(
    jobs_db: JobsDb, job_id: uuid.UUID, fleet: WorkerFleet
) -> None:
    """The lease ran out, the reaper requeued the job, and another worker found its key locked."""
    await jobs_db.wait_event(job_id, "lease_expired", timeout=15, diagnostics=fleet.diagnostics)
    await jobs_db.wait_event(job_id, "lock_busy", timeout=15, diagnostics=fleet.diagnostics)
    row = await jobs_db.job(job_id)
    assert row["status"] == "queued"
    assert row["attempt"] == 1


async def _assert_second_attempt_won(
    jobs_db: JobsDb,
    job_id: uuid.UUID,
    stale: WorkerProcess,
    progress: dict[str, object] | None,
    result: dict[str, object] | None = None,
) -> None:
    """The final state is attempt 2's; the stale runner wrote nothing and logged why."""
    done = await jobs_db.wait_status(job_id, "succeeded", timeout=30, diagnostics=stale.tail)
    assert done["attempt"] == 2
    assert done["progress"] == progress
    assert done["result"] == result

    events = await jobs_db.events(job_id)
    names = [e["event"] for e in events]
    assert names.count("succeeded") == 1
    started = [e for e in events if e["event"] == "started"]
    assert [e["attempt"] for e in started] == [1, 2]
    assert started[0]["details"] == {"worker_id": stale.worker_id}
    # Either worker may run attempt 2 (the thawed one too); the row names whoever did.
    assert done["worker_id"] == started[1]["details"]["worker_id"]
    assert [e["attempt"] for e in events if e["event"] == "lease_expired"] == [1]
    late = [e for e in events if e["attempt"] == 1 and e["event"] in FINISHING_EVENTS]
    assert late == [], "the stale runner wrote after losing its lease"
    assert (names[-1], events[-1]["attempt"]) == ("succeeded", 2)

    fenced_line = f"attempt ended: fenced: job {job_id} attempt 1"
    await wait_until(
        lambda: "lease lost" in stale.log() and fenced_line in stale.log(),
        timeout=10,
        what=f"{stale.worker_id} to log that it lost the lease",
        diagnostics=stale.tail,
    )
    assert f"attempt ended: succeeded: job {job_id} attempt 1" not in stale.log()
    assert stale.alive(), "a fenced runner is not a reason to crash"


async def test_killed_worker_job_completes_on_another_worker_after_its_lease(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    for name in ("w1", "w2"):
        await fleet.start_ready(name)
    job_id = await jobs_db.enqueue("noop", {"steps": 16, "sleep": 0.25}, lease_ttl_sec=2)

    victim = fleet.by_id(await _running_with_progress(jobs_db, job_id, fleet))
    survivor = next(w for w in fleet.workers if w is not victim)
    victim.kill()
    assert await victim.wait_exit(timeout=10) == -signal.SIGKILL

    done = await jobs_db.wait_status(job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics)
    assert done["attempt"] == 2
    assert done["worker_id"] == survivor.worker_id
    assert done["progress"] == {"processed": 16, "total": 16}

    events = await jobs_db.events(job_id)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("queued", 0),
        ("started", 1),
        ("lease_expired", 1),
        ("started", 2),
        ("succeeded", 2),
    ]
    expired = events[2]
    assert expired["details"] == {
        "worker_id": victim.worker_id,
        "reaped_by": survivor.worker_id,
    }
    assert events[1]["details"] == {"worker_id": victim.worker_id}
    assert events[3]["details"] == {"worker_id": survivor.worker_id}
    # The lease had run out before the reaper acted.
    assert (expired["at"] - events[1]["at"]).total_seconds() >= 2
    assert survivor.alive()


async def test_job_that_kills_its_worker_ends_lost_and_the_fleet_recovers(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    for name in ("w1", "w2"):
        await fleet.start_ready(name)
    job_id = await jobs_db.enqueue("test.crash", {}, max_attempts=2, lease_ttl_sec=2)

    replaced: set[int] = set()

    def restart_the_dead() -> None:
        """Keep two workers up, as a process supervisor would."""
        for worker in list(fleet.workers):
            if not worker.alive() and worker.pid not in replaced:
                replaced.add(worker.pid)
                fleet.start()

    async def lost() -> bool:
        restart_the_dead()
        return (await jobs_db.job(job_id))["status"] == "lost"

    await wait_until(lost, timeout=40, what="the job to end lost", diagnostics=fleet.diagnostics)
    row = await jobs_db.job(job_id)
    assert row["attempt"] == 2
    assert row["error"] == "lease expired on the last attempt (2)"
    assert row["finished_at"] is not None
    assert row["lease_expires_at"] is None
    events = await jobs_db.events(job_id)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("queued", 0),
        ("started", 1),
        ("lease_expired", 1),
        ("started", 2),
        ("lost", 2),
    ]

    # The fleet still works: a normal job runs on whoever is left or was restarted.
    restart_the_dead()
    normal = await jobs_db.enqueue("noop", {"steps": 1, "sleep": 0})
    await jobs_db.wait_status(normal, "succeeded", timeout=30, diagnostics=fleet.diagnostics)

    # pgqueuer re-picks the dead workers' rows; they must not start the job again.
    async def dispatches_settled() -> bool:
        return not await jobs_db.pgqueuer_rows()

    await wait_until(
        dispatches_settled,
        timeout=20,
        what="dead dispatches re-picked",
        diagnostics=fleet.diagnostics,
    )
    assert [e["event"] for e in await jobs_db.events(job_id)].count("started") == 2
    crashed = [w for w in fleet.workers if w.returncode == 1]
    assert len(crashed) == 2, "each attempt killed exactly one worker"
    assert (await jobs_db.job(job_id))["status"] == "lost"


async def test_stopped_runner_cannot_overwrite_the_newer_attempt(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    # The maintenance leader serves another queue, so the frozen worker is not the leader.
    leader = await fleet.start_ready("leader", queues={"maintenance.only": 1})
    await _wait_leader(fleet, leader)
    for name in ("w1", "w2"):
        await fleet.start_ready(name)
    job_id = await jobs_db.enqueue("noop", {"steps": 12, "sleep": 0.25}, lease_ttl_sec=2)
    stale = fleet.by_id(await _running_with_progress(jobs_db, job_id, fleet))

    # Frozen, the worker keeps its advisory lock: the new attempt waits for the thaw.
    stale.send(signal.SIGSTOP)
    await _wait_requeued_behind_the_lock(jobs_db, job_id, fleet)
    stale.send(signal.SIGCONT)

    await _assert_second_attempt_won(jobs_db, job_id, stale, {"processed": 12, "total": 12})


async def test_stopped_leader_hands_over_maintenance_and_its_runner_is_fenced(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    stale = await fleet.start_ready("w1")
    await _wait_leader(fleet, stale)
    # w2 is started before the job and frozen while the job is handed out, so the leader
    # runs it. Started only once the job runs, w2 could take longer to start under load than
    # the job takes to finish, and the leader would be stopped with nothing to hand over.
    other = await fleet.start_ready("w2")
    other.send(signal.SIGSTOP)
    job_id = await jobs_db.enqueue("noop", {"steps": 12, "sleep": 0.25}, lease_ttl_sec=2)
    assert await _running_with_progress(jobs_db, job_id, fleet) == "w1"
    other.send(signal.SIGCONT)

    stale.send(signal.SIGSTOP)
    # The frozen leader's session is closed by the server, so w2 takes over the reaper.
    await _wait_leader(fleet, other)
    await _wait_requeued_behind_the_lock(jobs_db, job_id, fleet)
    stale.send(signal.SIGCONT)

    await _assert_second_attempt_won(jobs_db, job_id, stale, {"processed": 12, "total": 12})


async def test_runner_that_starved_its_heartbeat_cannot_write_its_result(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    """The pipeline blocks the event loop past its lease, then finishes: nothing is written."""
    leader = await fleet.start_ready("leader", queues={"maintenance.only": 1})
    await _wait_leader(fleet, leader)
    for name in ("w1", "w2"):
        await fleet.start_ready(name)
    job_id = await jobs_db.enqueue("test.hog", {"block": 4, "block_attempts": 1}, lease_ttl_sec=2)
    running = await jobs_db.wait_status(
        job_id, "running", timeout=15, diagnostics=fleet.diagnostics
    )
    stale = fleet.by_id(running["worker_id"])

    await _wait_requeued_behind_the_lock(jobs_db, job_id, fleet)
    # Each attempt returns its own number: attempt 1's result is refused with its status.
    await _assert_second_attempt_won(jobs_db, job_id, stale, None, {"attempt": 2})
    assert "nothing written" in stale.log()
