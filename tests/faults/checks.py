"""What each fault scenario checks once its load has drained, and its one line of figures.

The pipelines' own run log (`e2e_runs`, written by `test.record` on the database clock) says when
each attempt's body really ran. A run without `finished_at` did not end normally; it ends at:

- its `stopped_at`, which the body itself wrote when it stopped early (canceled or interrupted,
  or its own writes failed with the database gone; a finish record whose reply was lost leaves
  both, and the run counts as stopped, as its runner saw it);

- its `interrupted` event, for an attempt a draining worker stopped (written after the body
  stopped and before the lock_key was released, so it bounds the run from above);
- otherwise the time its worker died, as the test recorded it: the database clock read just
  before sending SIGKILL (the body may run a few more milliseconds until the signal lands, but
  nothing else can take its lock_key before the server sees the process gone), or the clock once
  a worker that killed itself was seen dead (an upper bound);
- otherwise it is unexplained (reported as a failure) and taken to end when the job's next
  attempt started, or now.

The lease expiry is not used as the end: the advisory lock goes with the dead process, so other
jobs of its lock_key may rightly start long before the reaper notices the lease.
"""

from __future__ import annotations

import random
import signal
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.support.jobs_db import FINAL, JobsDb
from tests.support.overlap import most_at_once
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

FIGURES_FILE = PROJECT_ROOT / "test-output" / "faults.txt"


@dataclass
class Run:
    """One pipeline run (one attempt's body) and the interval it is taken to have lasted."""

    job_id: uuid.UUID
    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    ends_at: datetime
    how_ended: str  # finished, stopped, interrupted, worker died, unexplained


@dataclass
class Outcome:
    """Everything found wrong or counted after a scenario's load drained."""

    jobs: int
    statuses: dict[str, int]
    lost: list[str] = field(default_factory=list)  # jobs missing, unfinished or ended unexplained
    overlaps: list[str] = field(default_factory=list)  # one lock_key, two jobs at once
    concurrent_attempts: list[str] = field(default_factory=list)  # one job, two runs at once
    duplicate_runs: list[str] = field(default_factory=list)  # an attempt or a success run twice
    attempt_errors: list[str] = field(default_factory=list)
    unexplained_runs: list[str] = field(default_factory=list)
    # A concurrency group with more runs at once than its concurrency_limit.
    over_limit: list[str] = field(default_factory=list)
    # The most runs of each concurrency group seen at once.
    group_peaks: dict[str, int] = field(default_factory=dict)
    # A body that finished just before its worker was killed, run again by the next attempt:
    # at-least-once by design, counted but not a fault.
    reruns: list[str] = field(default_factory=list)
    runs: int = 0

    def problems(self) -> list[str]:
        """Every finding, one line each (at most 20 per kind)."""
        found: list[str] = []
        for name in (
            "lost",
            "overlaps",
            "concurrent_attempts",
            "duplicate_runs",
            "attempt_errors",
            "unexplained_runs",
            "over_limit",
        ):
            items: list[str] = getattr(self, name)
            found += [f"{name}: {item}" for item in items[:20]]
            if len(items) > 20:
                found.append(f"{name}: ... {len(items) - 20} more")
        return found

    def assert_clean(self, diagnostics: str = "") -> None:
        """Fail listing every finding."""
        found = self.problems()
        assert not found, "\n".join(found) + (f"\n{diagnostics}" if diagnostics else "")


def figures_line(
    scenario: str, outcome: Outcome, *, recovery_sec: float | None, **extra: object
) -> str:
    """The scenario's one line of figures."""
    recovery = "-" if recovery_sec is None else f"{recovery_sec:.1f}"
    statuses = ",".join(f"{k}={v}" for k, v in sorted(outcome.statuses.items()))
    parts = [
        f"[faults] {scenario}:",
        f"jobs={outcome.jobs}",
        f"lost={len(outcome.lost)}",
        f"overlaps={len(outcome.overlaps) + len(outcome.concurrent_attempts)}",
        f"duplicate_runs={len(outcome.duplicate_runs)}",
        f"recovery_sec={recovery}",
        f"runs={outcome.runs}",
        f"reruns_after_kill={len(outcome.reruns)}",
        f"statuses[{statuses}]",
        *(f"{k}={v}" for k, v in extra.items()),
    ]
    return " ".join(parts)


def report(line: str, capsys: Any) -> None:
    """Show the line whatever pytest captures, and append it to test-output/faults.txt."""
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a") as out:
        out.write(line + "\n")
    with capsys.disabled():
        print("\n" + line)


async def wait_drained(
    jobs_db: JobsDb, expected: int, *, timeout: float, diagnostics: Any = None
) -> None:
    """Poll until `expected` jobs exist and every one is final."""

    async def drained() -> bool:
        rows = await jobs_db.fetch(
            "SELECT count(*) AS n, count(*) FILTER (WHERE status = ANY(:final)) AS done"
            " FROM dl_jobs",
            final=sorted(FINAL),
        )
        return bool(rows[0]["n"] == expected and rows[0]["done"] == expected)

    await wait_until(
        drained,
        timeout=timeout,
        interval=0.25,
        what=f"{expected} jobs to end",
        diagnostics=diagnostics,
    )


async def check_jobs(
    jobs_db: JobsDb,
    expected_ids: set[uuid.UUID],
    *,
    worker_ends: dict[str, datetime] | None = None,
    allowed_endings: dict[uuid.UUID, tuple[str, str]] | None = None,
    recorded: bool = True,
) -> Outcome:
    """Check every job of the scenario, its events and (when `recorded`) its runs.

    `allowed_endings` maps a job to (status, error) for jobs meant to end other than
    succeeded; every other job must succeed. `worker_ends` maps a worker id to when it died.
    """
    worker_ends = worker_ends or {}
    allowed_endings = allowed_endings or {}
    jobs = {row["job_id"]: row for row in await jobs_db.fetch("SELECT * FROM dl_jobs")}
    statuses: dict[str, int] = defaultdict(int)
    for row in jobs.values():
        statuses[row["status"]] += 1
    outcome = Outcome(jobs=len(jobs), statuses=dict(statuses))

    for job_id in sorted(expected_ids - set(jobs)):
        outcome.lost.append(f"job {job_id} does not exist")
    for job_id in sorted(set(jobs) - expected_ids):
        outcome.lost.append(f"job {job_id} was not enqueued by the test")
    for job_id, row in jobs.items():
        wanted = allowed_endings.get(job_id, ("succeeded", None))
        if (row["status"], row["error"]) != wanted:
            outcome.lost.append(
                f"job {job_id} ended {row['status']} ({row['error']!r}), expected {wanted}"
            )

    events: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for event in await jobs_db.fetch(
        "SELECT job_id, event, attempt, at, details FROM dl_job_events ORDER BY id"
    ):
        events[event["job_id"]].append(event)
    _check_attempts(jobs, events, outcome)
    if recorded:
        _check_runs(jobs, events, worker_ends, await _run_rows(jobs_db), outcome)
    return outcome


def _check_attempts(
    jobs: dict[uuid.UUID, dict[str, Any]],
    events: dict[uuid.UUID, list[dict[str, Any]]],
    outcome: Outcome,
) -> None:
    """attempt = attempts started minus those given back; one final event, for the last one."""
    for job_id, row in jobs.items():
        names = [e["event"] for e in events[job_id]]
        started = [e["attempt"] for e in events[job_id] if e["event"] == "started"]
        expected_attempt = len(started) - names.count("interrupted")
        if row["attempt"] != expected_attempt:
            outcome.attempt_errors.append(
                f"job {job_id}: attempt {row['attempt']}, {len(started)} started and "
                f"{names.count('interrupted')} interrupted: {names}"
            )
        if started and row["status"] != "queued" and started[-1] != row["attempt"]:
            outcome.attempt_errors.append(
                f"job {job_id}: last start was attempt {started[-1]}, row says {row['attempt']}"
            )
        if row["status"] in FINAL and names.count(row["status"]) != 1:
            outcome.duplicate_runs.append(f"job {job_id}: events {names}")
        if row["status"] == "running":
            outcome.lost.append(f"job {job_id} still running")


async def _run_rows(jobs_db: JobsDb) -> list[dict[str, Any]]:
    return await jobs_db.fetch(
        "SELECT job_id, attempt, worker_id, started_at, finished_at, stopped_at"
        " FROM e2e_runs ORDER BY id"
    )


def _check_runs(
    jobs: dict[uuid.UUID, dict[str, Any]],
    events: dict[uuid.UUID, list[dict[str, Any]]],
    worker_ends: dict[str, datetime],
    rows: list[dict[str, Any]],
    outcome: Outcome,
) -> None:
    """Runs once per attempt, one success run per succeeded job, no overlaps by job or key."""
    by_job: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_job[row["job_id"]].append(row)
    outcome.runs = len(rows)

    runs: list[Run] = []
    for job_id, job_rows in by_job.items():
        job_rows.sort(key=lambda r: r["started_at"])
        interrupted = _interruption_times(events[job_id])
        # A given-back (interrupted) attempt's number is used again by the next start.
        starts: dict[int, int] = defaultdict(int)
        keys = []
        for row in job_rows:
            keys.append((row["attempt"], starts[row["attempt"]]))
            starts[row["attempt"]] += 1
        for attempt, index in keys:
            if index and (attempt, index - 1) not in interrupted:
                outcome.duplicate_runs.append(
                    f"job {job_id}: attempt {attempt} ran again though not given back: "
                    f"{[r['attempt'] for r in job_rows]}"
                )
        # A body that raised after its finish record committed (the reply lost with the
        # server) also wrote `stopped_at`: its runner saw a failure, so it does not count.
        finished = [r for r in job_rows if r["finished_at"] is not None and r["stopped_at"] is None]
        expired = {e["attempt"] for e in events[job_id] if e["event"] == "lease_expired"}
        rerun = [
            r for r in finished[:-1] if r["worker_id"] in worker_ends and r["attempt"] in expired
        ]
        outcome.reruns += [f"job {job_id} attempt {r['attempt']}" for r in rerun]
        if len(finished) - len(rerun) > 1:
            outcome.duplicate_runs.append(
                f"job {job_id}: {len(finished)} runs finished (attempts "
                f"{[r['attempt'] for r in finished]})"
            )
        job = jobs.get(job_id)
        succeeded = job is not None and job["status"] == "succeeded"
        if succeeded and (not finished or finished[-1]["attempt"] != job["attempt"]):
            outcome.attempt_errors.append(
                f"job {job_id} succeeded on attempt {job['attempt']} but the finished run "
                f"was {[r['attempt'] for r in finished]}"
            )
        for index, row in enumerate(job_rows):
            next_start = job_rows[index + 1]["started_at"] if index + 1 < len(job_rows) else None
            ended = interrupted.get(keys[index])
            runs.append(_run(row, ended, worker_ends, next_start, outcome))

    for job_id, row in jobs.items():
        if row["status"] == "succeeded" and job_id not in by_job:
            outcome.attempt_errors.append(f"job {job_id} succeeded without a run")

    outcome.concurrent_attempts += _overlapping(
        runs, key=lambda run: str(run.job_id), skip_same_job=False
    )
    lock_keys = {job_id: row["lock_key"] for job_id, row in jobs.items()}
    outcome.overlaps += _overlapping(
        runs, key=lambda run: lock_keys.get(run.job_id, "?"), skip_same_job=True
    )
    _check_group_limits(jobs, runs, outcome)


def _check_group_limits(
    jobs: dict[uuid.UUID, dict[str, Any]], runs: list[Run], outcome: Outcome
) -> None:
    """Each concurrency group never had more runs at once than its jobs' largest limit."""
    groups: dict[str, list[Run]] = defaultdict(list)
    limits: dict[str, int] = defaultdict(int)
    for run in runs:
        job = jobs.get(run.job_id)
        if job is not None and job.get("concurrency_key") is not None:
            groups[job["concurrency_key"]].append(run)
            limits[job["concurrency_key"]] = max(
                limits[job["concurrency_key"]], job["concurrency_limit"]
            )
    for group, members in groups.items():
        peak = most_at_once((run.started_at, run.ends_at) for run in members)
        outcome.group_peaks[group] = peak
        if peak > limits[group]:
            outcome.over_limit.append(f"{group}: {peak} runs at once, limit {limits[group]}")


def _interruption_times(events: list[dict[str, Any]]) -> dict[tuple[int, int], datetime]:
    """When each given-back start was interrupted, by (attempt, how many starts of it before).

    The `interrupted` event carries the attempt number after the give-back, so it is matched
    to the start it follows.
    """
    found: dict[tuple[int, int], datetime] = {}
    starts: dict[int, int] = defaultdict(int)
    current: tuple[int, int] | None = None
    for event in events:
        if event["event"] == "started":
            current = (event["attempt"], starts[event["attempt"]])
            starts[event["attempt"]] += 1
        elif event["event"] == "interrupted" and current is not None:
            found[current] = event["at"]
            current = None
    return found


def _run(
    row: dict[str, Any],
    interrupted_at: datetime | None,
    worker_ends: dict[str, datetime],
    next_start: datetime | None,
    outcome: Outcome,
) -> Run:
    """The run with the end it is taken to have (see the module docstring)."""
    how = "finished"
    end = row["finished_at"]
    if row["stopped_at"] is not None:
        how, end = "stopped", row["stopped_at"]
    if end is None and interrupted_at is not None:
        how, end = "interrupted", interrupted_at
    if end is None and row["worker_id"] in worker_ends:
        how, end = "worker died", worker_ends[row["worker_id"]]
    if end is None:
        how = "unexplained"
        end = next_start or datetime.max.replace(tzinfo=row["started_at"].tzinfo)
        outcome.unexplained_runs.append(
            f"job {row['job_id']} attempt {row['attempt']} on {row['worker_id']} never finished"
            " and its worker neither died nor stopped it"
        )
    return Run(
        job_id=row["job_id"],
        attempt=row["attempt"],
        worker_id=row["worker_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        ends_at=end,
        how_ended=how,
    )


def _overlapping(runs: list[Run], *, key: Any, skip_same_job: bool) -> list[str]:
    """Runs that started before an earlier run of the same group ended (a sweep per group)."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[key(run)].append(run)
    found = []
    for group, members in groups.items():
        members.sort(key=lambda run: run.started_at)
        latest: Run | None = None  # the run seen so far that ends last
        for run in members:
            clash = latest is not None and run.started_at < latest.ends_at
            if clash and latest is not None and not (skip_same_job and latest.job_id == run.job_id):
                found.append(
                    f"{group}: job {run.job_id} attempt {run.attempt} on {run.worker_id} started "
                    f"{run.started_at.time()} before job {latest.job_id} attempt "
                    f"{latest.attempt} on {latest.worker_id} ended {latest.ends_at.time()} "
                    f"({latest.how_ended})"
                )
            if latest is None or run.ends_at > latest.ends_at:
                latest = run
    return found


async def kill_a_busy_worker(
    jobs_db: JobsDb, fleet: WorkerFleet, rng: random.Random
) -> tuple[str, datetime]:
    """SIGKILL a live worker, one that runs a job if any does; returns it and the kill time."""
    busy = {
        row["worker_id"]
        for row in await jobs_db.fetch("SELECT worker_id FROM dl_jobs WHERE status = 'running'")
    }
    alive = fleet.alive()
    victim = rng.choice([w for w in alive if w.worker_id in busy] or alive)
    # The database clock just before the signal: the victim's runs end at (about) this time.
    killed_at = await jobs_db.now()
    victim.kill()
    assert await victim.wait_exit(timeout=10) == -signal.SIGKILL
    return victim.worker_id, killed_at
