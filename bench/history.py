"""A large finished history written straight into dl_jobs and dl_job_events with SQL.

Each job looks like one that ran once: `queued`, `started` and a final event, created at a
random moment of the last four weeks and finished two seconds later. 90% succeeded, 5%
failed, 5% canceled. pgq_job_id values sit far above anything the live queue hands out.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

EVENTS_PER_JOB = 3
CHUNK = 100_000

_INSERT = """
WITH source AS (
    SELECT g,
           now() - interval '28 days' * random() AS created,
           CASE WHEN g % 20 = 0 THEN 'failed'
                WHEN g % 20 = 1 THEN 'canceled'
                ELSE 'succeeded' END AS status
    FROM generate_series($1::bigint, $2::bigint) AS g
), jobs AS (
    INSERT INTO dl_jobs (
        job_id, queue, task, args, lock_key, priority, available_at, status, attempt,
        max_attempts, lease_ttl_sec, error, worker_id, pgq_job_id,
        created_at, updated_at, started_at, finished_at
    )
    SELECT gen_random_uuid(), 'bench', 'noop', '{}'::jsonb, 'history-' || g, 100, created,
           status, 1, 5, 60,
           CASE WHEN status = 'failed' THEN 'NoopFailure: noop failed on purpose at step 0' END,
           'history', 10000000000 + g,
           created, created + interval '2 seconds', created + interval '1 second',
           created + interval '2 seconds'
    FROM source
    RETURNING job_id, status, created_at, started_at, finished_at, error
)
INSERT INTO dl_job_events (job_id, event, attempt, at, details)
SELECT jobs.job_id, e.event, e.attempt, e.at, e.details
FROM jobs
CROSS JOIN LATERAL (VALUES
    ('queued', 0, jobs.created_at, '{"queue": "bench", "task": "noop"}'::jsonb),
    ('started', 1, jobs.started_at, '{"worker_id": "history"}'::jsonb),
    (jobs.status, 1, jobs.finished_at,
     CASE WHEN jobs.error IS NOT NULL THEN jsonb_build_object('error', jobs.error) END)
) AS e(event, attempt, at, details)
"""


async def build_history(dsn: str, jobs: int, progress: Callable[[str], None] | None = None) -> None:
    """Insert `jobs` finished jobs and their events in chunks, then settle them.

    VACUUM ANALYZE and a CHECKPOINT make the history look like one a server has lived with:
    otherwise the measurement pays for this bulk load (hint bits, autovacuum of a million
    fresh rows, full-page writes after the checkpoint the load triggers), not for its size.
    """
    connection = await asyncpg.connect(dsn)
    try:
        for start in range(1, jobs + 1, CHUNK):
            end = min(jobs, start + CHUNK - 1)
            await connection.execute(_INSERT, start, end)
            if progress is not None:
                progress(f"history: {end:,} of {jobs:,} jobs")
        await connection.execute("VACUUM ANALYZE dl_jobs")
        await connection.execute("VACUUM ANALYZE dl_job_events")
        try:
            await connection.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:  # DATABASE_URL of a plain user
            if progress is not None:
                progress("history: CHECKPOINT not allowed for this user; skipped")
    finally:
        await connection.close()
