"""Fleet-wide rate limits: three workers share a queue's start rate and each rate_key's.

The issue's proof: a limit of 20 starts/s on the queue and 5/s per rate_key over 4 keys,
with a minute of backlog. Every start is read from the database (the `started` event, stamped
with the time the bucket counted it): no window of one second holds more than the limits,
and the fleet uses at least 90% of the rate it is allowed.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta

from app.db.engine import create_session_factory
from app.domain.rate_limits import QueueLimits, RateLimit
from app.domain.spec import JobCreate
from app.jobs.queue_service import QueueService
from tests.support.jobs_db import JobsDb, enqueue_all
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

QUEUE = "etl.rated"
WORKERS = 3
CONCURRENCY = 8
QUEUE_RATE = 20
KEY_RATE = 5
KEYS = [f"partner-{i}" for i in range(4)]
MEASURED_SEC = 60
# A minute at the queue's rate, and some more so the backlog never runs dry while measured.
JOBS = QUEUE_RATE * MEASURED_SEC + 100
WINDOW = timedelta(seconds=1)


def _most_in_a_window(times: list[datetime]) -> int:
    """The most starts any window (t - 1 s, t] holds; t at each start covers every window."""
    ordered = sorted(times)
    return max(
        (i + 1 - bisect.bisect_right(ordered, end - WINDOW) for i, end in enumerate(ordered)),
        default=0,
    )


async def _set_limits(jobs_db: JobsDb) -> None:
    """As `PUT /api/v1/queues/etl.rated/limits` does: the API's own service."""
    service = QueueService(create_session_factory(jobs_db.engine), jobs_db.settings)
    await service.set_limits(
        QUEUE,
        QueueLimits(
            start=RateLimit(count=QUEUE_RATE, period_sec=1),
            per_rate_key=RateLimit(count=KEY_RATE, period_sec=1),
        ),
    )


async def test_three_workers_keep_to_the_queue_rate_and_each_keys_rate_using_most_of_it(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await _set_limits(jobs_db)
    specs = [
        JobCreate(
            queue=QUEUE,
            task="noop",
            args={"steps": 0},
            lock_key=f"rated-{i}",
            rate_key=KEYS[i % len(KEYS)],
        )
        for i in range(JOBS)
    ]
    job_ids = await enqueue_all(jobs_db, specs)
    for _ in range(WORKERS):
        fleet.start(queues={QUEUE: CONCURRENCY})

    async def a_job_waits_for_the_rate() -> list[dict[str, object]] | None:
        rows = await jobs_db.fetch(
            "SELECT status, waiting_for, available_at > now() AS later FROM dl_jobs"
            " WHERE queue = :queue AND waiting_for IS NOT NULL LIMIT 1",
            queue=QUEUE,
        )
        return rows or None

    waiting = await wait_until(
        a_job_waits_for_the_rate, timeout=60, what="a job waiting for the rate limit"
    )
    assert waiting[0]["waiting_for"] == "rate_limit"

    async def a_minute_started() -> int | None:
        started = await jobs_db.scalar(
            "SELECT count(*) FROM dl_job_events e JOIN dl_jobs j USING (job_id)"
            " WHERE j.queue = :queue AND e.event = 'started'",
            queue=QUEUE,
        )
        return started if started >= QUEUE_RATE * MEASURED_SEC else None

    await wait_until(
        a_minute_started,
        timeout=MEASURED_SEC * 2,
        what=f"{QUEUE_RATE * MEASURED_SEC} starts",
        diagnostics=fleet.diagnostics,
    )
    fleet.stop_all()

    starts = await jobs_db.fetch(
        "SELECT e.at, j.rate_key, j.worker_id, j.attempt FROM dl_job_events e"
        " JOIN dl_jobs j USING (job_id) WHERE j.queue = :queue AND e.event = 'started'",
        queue=QUEUE,
    )
    times = [row["at"] for row in starts]
    assert _most_in_a_window(times) <= QUEUE_RATE
    for key in KEYS:
        assert _most_in_a_window([r["at"] for r in starts if r["rate_key"] == key]) <= KEY_RATE
    first = min(times)
    in_the_minute = sum(1 for at in times if at < first + timedelta(seconds=MEASURED_SEC))
    used = in_the_minute / (QUEUE_RATE * MEASURED_SEC)
    assert used >= 0.9, f"the fleet used {used:.1%} of the allowed rate"
    assert len({row["worker_id"] for row in starts}) == WORKERS, "every worker started jobs"
    # Waiting for the rate spends no attempt, and says so in the job's history.
    assert {row["attempt"] for row in starts} == {1}
    waits = await jobs_db.fetch(
        "SELECT details FROM dl_job_events WHERE event = 'rate_limited' AND job_id = ANY(:ids)",
        ids=job_ids,
    )
    assert waits, "no job was held back: nothing was tested"
    assert {w["details"]["limit"] for w in waits} <= {"queue", "rate_key"}
    assert all(datetime.fromisoformat(w["details"]["until"]) for w in waits)
