"""The worker's hot path on dl_jobs: batched starts and finishes on its lock connection.

Prepared asyncpg statements on a connection the worker keeps (app.db.jobs holds the Core
statements that go through a session).

Starting and finishing jobs one transaction each costs about ten round trips per job; under
load these statements start or finish every waiting attempt at once instead. Each is one
statement (an implicit transaction) that writes dl_jobs and its dl_job_events rows together,
with the same fences as app.db.jobs: a start only from the job's current dispatch, a
finish only while the attempt is still the running one.

Advisory locks taken here are session-level: they outlive the statement and are released by
`unlock_keys` on the same connection, after the finishing write has committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from app.db.pgqueuer_tables import DISPATCH_CHANNEL
from app.db.sql_common import qualified
from app.domain.attempts import FinishRequest, StartAnswer, StartedAttempt, StartRequest
from app.domain.states import JobEvent, JobStatus


@dataclass(frozen=True)
class BatchStatements:
    """The batch SQL with the queue schema's table names filled in."""

    start: str
    finish: str
    unlock: str = """
        SELECT k FROM unnest($1::text[]) AS k
        WHERE NOT pg_advisory_unlock(hashtextextended(k, 0))
    """
    relock: str = """
        SELECT k FROM unnest($1::text[]) AS k
        WHERE NOT pg_try_advisory_lock(hashtextextended(k, 0))
    """
    # Locks this session holds that no running attempt owns: left by a statement that failed
    # after taking them (session-level locks ignore the rollback).
    reconcile: str = """
        SELECT pg_advisory_unlock(held.key)
        FROM (
            SELECT (classid::bigint << 32) | objid::bigint AS key
            FROM pg_locks
            WHERE locktype = 'advisory' AND objsubid = 1 AND granted
              AND pid = pg_backend_pid()
        ) AS held
        WHERE held.key NOT IN (SELECT hashtextextended(k, 0) FROM unnest($1::text[]) AS k)
    """


@cache
def batch_statements(schema: str) -> BatchStatements:
    """The statements for tables in `schema`."""
    jobs = qualified(schema, "dl_jobs")
    events = qualified(schema, "dl_job_events")
    queues = qualified(schema, "dl_queues")
    queued, running = JobStatus.QUEUED.value, JobStatus.RUNNING.value
    start = f"""
        WITH request AS (
            -- One request per dispatch: the same dispatch asked twice still starts once.
            -- Not one per job: pgqueuer re-picks a replaced dispatch whose heartbeat went
            -- stale, and keeping that one could drop the job's current dispatch. Only the
            -- current one passes `startable`, so a job still gets at most one row.
            SELECT DISTINCT ON (r.job_id, r.pgq_job_id) r.job_id, r.pgq_job_id, r.ord
            FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS r(job_id, pgq_job_id, ord)
            ORDER BY r.job_id, r.pgq_job_id, r.ord
        ),
        startable AS (
            -- A job of a paused queue (a dispatch picked just before the pause committed)
            -- is answered `paused` and takes no lock; ordering paused ones last lets the
            -- first unpaused job of a lock_key try the lock.
            SELECT j.job_id, j.lock_key, r.pgq_job_id, q.queue IS NOT NULL AS paused,
                   row_number() OVER (PARTITION BY j.lock_key
                                      ORDER BY q.queue IS NOT NULL, r.ord) AS rank_in_batch
            FROM request r JOIN {jobs} j ON j.job_id = r.job_id
            -- dl_queues is tiny: a row per queue ever paused, found by primary key.
            LEFT JOIN {queues} q ON q.queue = j.queue AND q.paused
            -- Spelled out so the planner looks the ids up by primary key instead of
            -- scanning every queued job (its estimate of unnest's rows is blind).
            WHERE j.job_id = ANY($1::uuid[])
              AND j.status = '{queued}' AND j.pgq_job_id = r.pgq_job_id
              AND NOT j.cancel_requested
        ),
        locked AS MATERIALIZED (
            -- CASE fixes the evaluation order: a lock is only tried for the first job of
            -- each lock_key in the batch, and never for a key this session already holds
            -- (session locks stack, so trying it again would succeed).
            SELECT s.job_id, s.lock_key, s.pgq_job_id, s.paused,
                   CASE WHEN s.rank_in_batch = 1 AND NOT s.held AND NOT s.paused
                        THEN pg_try_advisory_lock(hashtextextended(s.lock_key, 0))
                        ELSE false END AS got_lock
            FROM (
                -- An anti-join, not `<> ALL($3)`: that compares every start with every
                -- held key, which grows with the square of a busy worker's load.
                SELECT st.*, h.key IS NOT NULL AS held
                FROM startable st
                LEFT JOIN (SELECT DISTINCT unnest($3::text[]) AS key) h ON h.key = st.lock_key
            ) s
        ),
        started AS (
            UPDATE {jobs} j
            SET status = '{running}', attempt = j.attempt + 1,
                lease_expires_at = now() + j.lease_ttl_sec * interval '1 second',
                -- clock_timestamp(): after this statement took the lock. now() is when the
                -- statement began, which can precede the previous holder's finish.
                heartbeat_at = now(), started_at = coalesce(j.started_at, clock_timestamp()),
                worker_id = $4, updated_at = now()
            FROM locked l
            WHERE j.job_id = l.job_id AND j.job_id = ANY($1::uuid[])
              AND l.got_lock AND j.status = '{queued}'
              AND j.pgq_job_id = l.pgq_job_id AND NOT j.cancel_requested
            RETURNING j.job_id, j.queue, j.task, j.args, j.lock_key, j.priority, j.attempt,
                      j.max_attempts, j.lease_ttl_sec
        ),
        logged AS (
            INSERT INTO {events} (job_id, event, attempt, at, details)
            SELECT s.job_id, '{JobEvent.STARTED.value}', s.attempt, clock_timestamp(),
                   jsonb_build_object('worker_id', $4::text)
            FROM started s
        ),
        answered AS MATERIALIZED (
            -- The `started` notice: these queues' dispatches were picked and answered
            -- (started, left to wait for their lock, paused, canceled or stale), so the
            -- workers still counting them as pending stop doing so (app.jobs.wake_gate);
            -- one left out would keep every other worker's count up until its next empty
            -- dequeue, and each would look once for nothing. Sent on commit.
            SELECT pg_notify('{DISPATCH_CHANNEL}',
                json_build_object('kind', 'started',
                                  'queues', json_object_agg(queue, n))::text)
            FROM (
                SELECT j.queue, count(*) AS n
                FROM request r JOIN {jobs} j ON j.job_id = r.job_id
                WHERE j.job_id = ANY($1::uuid[])  -- by primary key, as in `startable`
                GROUP BY j.queue
            ) per_queue
            HAVING count(*) > 0
        )
        SELECT l.job_id, l.pgq_job_id, l.lock_key, l.got_lock, l.paused,
               s.job_id IS NOT NULL AS started,
               s.queue, s.task, s.args, s.priority, s.attempt, s.max_attempts, s.lease_ttl_sec
        -- Listing `answered` makes it run: a SELECT in WITH runs only when read.
        FROM locked l LEFT JOIN started s ON s.job_id = l.job_id,
             (SELECT count(*) FROM answered) AS announced
    """
    finish = f"""
        WITH request AS (
            SELECT *
            FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::jsonb[],
                        $6::text[], $7::jsonb[])
                 AS r(job_id, attempt, status, event, progress, error, details)
        ),
        finished AS (
            UPDATE {jobs} j
            SET status = r.status, finished_at = now(), lease_expires_at = NULL,
                updated_at = now(), error = r.error, progress = coalesce(r.progress, j.progress)
            FROM request r
            WHERE j.job_id = r.job_id AND j.job_id = ANY($1::uuid[])
              AND j.attempt = r.attempt AND j.status = '{running}'
            RETURNING j.job_id, j.attempt, r.event, r.details
        ),
        logged AS (
            -- The finishing worker's id joins every event; the request's own details win.
            INSERT INTO {events} (job_id, event, attempt, details)
            SELECT f.job_id, f.event, f.attempt,
                   jsonb_build_object('worker_id', $8::text) || coalesce(f.details, '{{}}')
            FROM finished f
        )
        SELECT f.job_id FROM finished f
    """
    return BatchStatements(start=start, finish=finish)


async def start_batch(
    connection: Any,
    statements: BatchStatements,
    requests: list[StartRequest],
    held_keys: list[str],
    worker_id: str,
) -> dict[uuid.UUID, StartAnswer]:
    """Lock and start every startable request; the answers by job id (one per job)."""
    rows = await connection.fetch(
        statements.start,
        [r.job_id for r in requests],
        [r.pgq_job_id for r in requests],
        held_keys,
        worker_id,
    )
    answers: dict[uuid.UUID, StartAnswer] = {}
    for row in rows:
        attempt = None
        if row["started"]:
            attempt = StartedAttempt(
                job_id=row["job_id"],
                queue=row["queue"],
                task=row["task"],
                args=row["args"],
                lock_key=row["lock_key"],
                priority=row["priority"],
                attempt=row["attempt"],
                max_attempts=row["max_attempts"],
                lease_ttl_sec=row["lease_ttl_sec"],
            )
        answers[row["job_id"]] = StartAnswer(
            job_id=row["job_id"],
            pgq_job_id=row["pgq_job_id"],
            lock_key=row["lock_key"],
            got_lock=row["got_lock"],
            attempt=attempt,
            paused=row["paused"],
        )
    return answers


async def finish_batch(
    connection: Any, statements: BatchStatements, requests: list[FinishRequest], worker_id: str
) -> set[uuid.UUID]:
    """Write every final status, each event naming `worker_id`; the ids still owned."""
    rows = await connection.fetch(
        statements.finish,
        [r.job_id for r in requests],
        [r.attempt for r in requests],
        [r.status.value for r in requests],
        [r.event.value for r in requests],
        [r.progress for r in requests],
        [r.error for r in requests],
        [r.details for r in requests],
        worker_id,
    )
    return {row["job_id"] for row in rows}


async def unlock_keys(connection: Any, statements: BatchStatements, keys: list[str]) -> list[str]:
    """Release session locks; returns the keys this session did not hold."""
    return [row["k"] for row in await connection.fetch(statements.unlock, keys)]


async def relock_keys(connection: Any, statements: BatchStatements, keys: list[str]) -> list[str]:
    """Take locks again on a new session; returns the keys someone else holds now."""
    return [row["k"] for row in await connection.fetch(statements.relock, keys)]


async def release_unowned_locks(
    connection: Any, statements: BatchStatements, owned_keys: list[str]
) -> None:
    """Drop every advisory lock of this session whose key is not in `owned_keys`."""
    await connection.execute(statements.reconcile, owned_keys)


async def ping(connection: Any) -> None:
    """A trivial round trip: fails when the connection (and so its session locks) is gone."""
    await connection.execute("SELECT 1")
