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

Concurrency groups: a job with `concurrency_key` K and `concurrency_limit` N also needs one of
K's slots 0..N-1, each an advisory lock on `hashtextextended('<i>:<K>', 1)`. Seed 1 keeps
slots apart from lock_key locks (seed 0), whatever text a lock_key holds. A slot is a slot
name (`slot_name`) everywhere else, held and released like a lock_key. Each job's own limit
bounds the slots it tries: jobs of one key with different limits share slots 0..min-1, so
at most the largest limit of them run at once, and a job never starts while its own N are taken.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from app.db.coalescing import hold_key
from app.db.pgqueuer_tables import DISPATCH_CHANNEL
from app.db.sql_common import qualified
from app.domain.attempts import FinishRequest, StartAnswer, StartedAttempt, StartRequest
from app.domain.rate_limits import WaitReason
from app.domain.states import JobEvent, JobStatus

# The hash seed of concurrency-group slots; lock_key locks use 0, join holds 2
# (app.db.coalescing).
SLOT_SEED = 1


def slot_name(concurrency_key: str, index: int) -> str:
    """The name of slot `index` of a concurrency group, as the start statement spells it."""
    return f"{index}:{concurrency_key}"


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
    unlock_slots: str = f"""
        SELECT s FROM unnest($1::text[]) AS s
        WHERE NOT pg_advisory_unlock(hashtextextended(s, {SLOT_SEED}))
    """
    relock_slots: str = f"""
        SELECT s FROM unnest($1::text[]) AS s
        WHERE NOT pg_try_advisory_lock(hashtextextended(s, {SLOT_SEED}))
    """
    # Locks this session holds that no running attempt owns: left by a statement that failed
    # after taking them (session-level locks ignore the rollback).
    reconcile: str = f"""
        SELECT pg_advisory_unlock(held.key)
        FROM (
            SELECT (classid::bigint << 32) | objid::bigint AS key
            FROM pg_locks
            WHERE locktype = 'advisory' AND objsubid = 1 AND granted
              AND pid = pg_backend_pid()
        ) AS held
        WHERE held.key NOT IN (SELECT hashtextextended(k, 0) FROM unnest($1::text[]) AS k
                               UNION ALL
                               SELECT hashtextextended(s, {SLOT_SEED})
                               FROM unnest($2::text[]) AS s)
    """


@cache
def batch_statements(schema: str) -> BatchStatements:
    """The statements for tables in `schema`."""
    jobs = qualified(schema, "dl_jobs")
    events = qualified(schema, "dl_job_events")
    queues = qualified(schema, "dl_queues")
    admit = qualified(schema, "dl_rate_admit")
    queued, running = JobStatus.QUEUED.value, JobStatus.RUNNING.value
    start = f"""
        WITH request AS (
            -- One request per dispatch: the same dispatch asked twice still starts once.
            -- Not one per job: pgqueuer re-picks a replaced dispatch whose heartbeat went
            -- stale, and keeping that one could drop the job's current dispatch. Only the
            -- current one passes `startable`, so a job still gets at most one row.
            SELECT DISTINCT ON (r.job_id, r.pgq_job_id) r.job_id, r.pgq_job_id, r.ord, r.waited
            FROM unnest($1::uuid[], $2::bigint[], $6::boolean[])
                 WITH ORDINALITY AS r(job_id, pgq_job_id, waited, ord)
            ORDER BY r.job_id, r.pgq_job_id, r.ord
        ),
        startable AS (
            -- A job of a paused queue (a dispatch picked just before the pause committed)
            -- is answered `paused` and takes no lock; ordering paused ones last lets the
            -- first unpaused job of a lock_key try the lock.
            SELECT j.job_id, j.lock_key, r.pgq_job_id, r.ord, coalesce(q.paused, false) AS paused,
                   j.concurrency_key, j.concurrency_limit, j.queue, j.rate_key, j.coalescing,
                   -- It has its place in its buckets' line already (postponed, or it
                   -- waited in the worker).
                   coalesce(j.waiting_for = '{WaitReason.RATE_LIMIT.value}', false) OR r.waited
                       AS waited_for_rate,
                   -- Under a rate limit of its queue: dl_rate_admit decides its start.
                   coalesce(q.start_limit IS NOT NULL
                            OR (q.rate_key_limit IS NOT NULL AND j.rate_key IS NOT NULL),
                            false) AS limited,
                   row_number() OVER (PARTITION BY j.lock_key
                                      ORDER BY coalesce(q.paused, false), r.ord)
                       AS rank_in_batch,
                   -- The jobs of one group in this batch split its slots between them
                   -- (slot i goes to the member i mod their count), so no two try one
                   -- slot: a second try would stack on the first and both would start.
                   row_number() OVER (PARTITION BY j.concurrency_key
                                      ORDER BY coalesce(q.paused, false), r.ord)
                       AS rank_in_group,
                   count(*) OVER (PARTITION BY j.concurrency_key) AS group_in_batch
            FROM request r JOIN {jobs} j ON j.job_id = r.job_id
            -- dl_queues is tiny (a row per queue ever paused or limited), by primary key.
            LEFT JOIN {queues} q ON q.queue = j.queue
            -- Spelled out so the planner looks the ids up by primary key instead of
            -- scanning every queued job (its estimate of unnest's rows is blind).
            WHERE j.job_id = ANY($1::uuid[])
              AND j.status = '{queued}' AND j.pgq_job_id = r.pgq_job_id
              AND NOT j.cancel_requested
        ),
        joinable AS MATERIALIZED (
            -- A coalescing trigger that joined a job holds it (shared) until it commits
            -- (app.db.coalescing): the job must not start before then. Tried without
            -- waiting, for the first job of a lock_key that could take its lock; the try
            -- holds until this statement commits, so no trigger joins a job it starts.
            SELECT st.*, h.key IS NOT NULL AS held,
                   CASE WHEN st.coalescing AND st.rank_in_batch = 1 AND h.key IS NULL
                             AND NOT st.paused
                        THEN NOT pg_try_advisory_xact_lock({hold_key("st.job_id")})
                        ELSE false END AS trigger_open
            FROM startable st
            -- An anti-join, not `<> ALL($3)`: that compares every start with every
            -- held key, which grows with the square of a busy worker's load.
            LEFT JOIN (SELECT DISTINCT unnest($3::text[]) AS key) h ON h.key = st.lock_key
        ),
        locked AS MATERIALIZED (
            -- CASE fixes the evaluation order: a lock is only tried for the first job of
            -- each lock_key in the batch, and never for a key this session already holds
            -- (session locks stack, so trying it again would succeed).
            SELECT s.job_id, s.lock_key, s.pgq_job_id, s.ord, s.paused, s.concurrency_key,
                   s.concurrency_limit, s.rank_in_group, s.group_in_batch, s.queue, s.rate_key,
                   s.waited_for_rate, s.limited, s.trigger_open,
                   CASE WHEN s.rank_in_batch = 1 AND NOT s.held AND NOT s.paused
                             AND NOT s.trigger_open
                        THEN pg_try_advisory_lock(hashtextextended(s.lock_key, 0))
                        ELSE false END AS got_lock
            FROM joinable s
        ),
        slotted AS MATERIALIZED (
            -- A job of a group that got its lock_key lock takes the first free slot of its
            -- share. CASE orders the checks: never a slot this session holds ($5: session
            -- locks stack, so trying it again would succeed), and LIMIT 1 stops at the
            -- first slot taken. Without a free slot the job waits (its lock goes back).
            SELECT l.*,
                   CASE WHEN l.got_lock AND l.concurrency_key IS NOT NULL THEN (
                       SELECT n.name
                       FROM generate_series(0, l.concurrency_limit - 1) AS i,
                            LATERAL (SELECT i::text || ':' || l.concurrency_key AS name) n
                       WHERE CASE WHEN i % l.group_in_batch = l.rank_in_group - 1
                                       AND NOT n.name = ANY($5::text[])
                                  THEN pg_try_advisory_lock(
                                           hashtextextended(n.name, {SLOT_SEED}))
                                  ELSE false END
                       LIMIT 1
                   ) END AS slot
            FROM locked l
        ),
        candidates AS (
            SELECT l.* FROM slotted l
            WHERE l.limited AND l.got_lock AND (l.concurrency_key IS NULL OR l.slot IS NOT NULL)
        ),
        rated AS MATERIALIZED (
            -- The rate-limited jobs that got their lock and slot ask their queue's buckets,
            -- in batch order; only those admitted start. See app.db.rate_limit_function.
            -- Asked last, so a job is counted only when nothing else holds it back: one
            -- an open coalescing trigger holds (trigger_open) took no lock, asks nothing.
            SELECT a.* FROM {admit}(
                ARRAY(SELECT c.job_id FROM candidates c ORDER BY c.ord),
                ARRAY(SELECT c.queue FROM candidates c ORDER BY c.ord),
                ARRAY(SELECT c.rate_key FROM candidates c ORDER BY c.ord),
                ARRAY(SELECT c.waited_for_rate FROM candidates c ORDER BY c.ord)) a
        ),
        started AS (
            UPDATE {jobs} j
            SET status = '{running}', attempt = j.attempt + 1,
                lease_expires_at = now() + j.lease_ttl_sec * interval '1 second',
                -- clock_timestamp(): after this statement took the lock. now() is when the
                -- statement began, which can precede the previous holder's finish.
                -- A rate-limited start is stamped with the time its bucket counted it.
                heartbeat_at = now(),
                started_at = coalesce(j.started_at, ra.decided_at, clock_timestamp()),
                worker_id = $4, updated_at = now(), waiting_for = NULL
            FROM slotted l LEFT JOIN rated ra ON ra.job_id = l.job_id
            WHERE j.job_id = l.job_id AND j.job_id = ANY($1::uuid[])
              AND l.got_lock AND (l.concurrency_key IS NULL OR l.slot IS NOT NULL)
              AND (NOT l.limited OR ra.admitted)
              AND j.status = '{queued}'
              AND j.pgq_job_id = l.pgq_job_id AND NOT j.cancel_requested
            RETURNING j.job_id, j.queue, j.task, j.args, j.lock_key, j.priority, j.attempt,
                      j.max_attempts, j.lease_ttl_sec, ra.decided_at, j.traceparent,
                      j.tracestate
        ),
        logged AS (
            INSERT INTO {events} (job_id, event, attempt, at, details)
            SELECT s.job_id, '{JobEvent.STARTED.value}', s.attempt,
                   coalesce(s.decided_at, clock_timestamp()),
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
        SELECT l.job_id, l.pgq_job_id, l.lock_key, l.got_lock, l.paused, l.trigger_open,
               l.concurrency_key, l.concurrency_limit, l.slot,
               s.job_id IS NOT NULL AS started,
               s.queue, s.task, s.args, s.priority, s.attempt, s.max_attempts, s.lease_ttl_sec,
               s.traceparent, s.tracestate, l.queue AS job_queue, l.rate_key,
               ra.admitted IS FALSE AS rate_limited, ra.decided_at, ra.retry_at, ra.limited_by
        -- Listing `answered` makes it run: a SELECT in WITH runs only when read.
        FROM slotted l LEFT JOIN started s ON s.job_id = l.job_id
             LEFT JOIN rated ra ON ra.job_id = l.job_id,
             (SELECT count(*) FROM answered) AS announced
    """
    finish = f"""
        WITH request AS (
            SELECT *
            FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::jsonb[],
                        $6::text[], $7::jsonb[], $9::text[])
                 AS r(job_id, attempt, status, event, progress, error, details, result)
        ),
        finished AS (
            -- The result comes as JSON text checked by the worker (app.pipelines.results),
            -- written by the same fence as the status: a stale attempt writes neither.
            UPDATE {jobs} j
            SET status = r.status, finished_at = now(), lease_expires_at = NULL,
                updated_at = now(), error = r.error, progress = coalesce(r.progress, j.progress),
                result = r.result::jsonb
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
    held_slots: list[str] | None = None,
) -> dict[uuid.UUID, StartAnswer]:
    """Lock and start every startable request; the answers by job id (one per job)."""
    rows = await connection.fetch(
        statements.start,
        [r.job_id for r in requests],
        [r.pgq_job_id for r in requests],
        held_keys,
        worker_id,
        held_slots or [],
        [r.waited_for_rate for r in requests],
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
                traceparent=row["traceparent"],
                tracestate=row["tracestate"],
            )
        answers[row["job_id"]] = StartAnswer(
            job_id=row["job_id"],
            pgq_job_id=row["pgq_job_id"],
            lock_key=row["lock_key"],
            got_lock=row["got_lock"],
            attempt=attempt,
            paused=row["paused"],
            trigger_open=row["trigger_open"],
            concurrency_key=row["concurrency_key"],
            concurrency_limit=row["concurrency_limit"],
            slot=row["slot"],
            queue=row["job_queue"],
            rate_key=row["rate_key"],
            rate_limited=row["rate_limited"],
            decided_at=row["decided_at"],
            retry_at=row["retry_at"],
            limited_by=row["limited_by"],
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
        [r.result_json for r in requests],
    )
    return {row["job_id"] for row in rows}


async def unlock_keys(connection: Any, statements: BatchStatements, keys: list[str]) -> list[str]:
    """Release session locks; returns the keys this session did not hold."""
    return [row["k"] for row in await connection.fetch(statements.unlock, keys)]


async def relock_keys(connection: Any, statements: BatchStatements, keys: list[str]) -> list[str]:
    """Take locks again on a new session; returns the keys someone else holds now."""
    return [row["k"] for row in await connection.fetch(statements.relock, keys)]


async def unlock_slots(connection: Any, statements: BatchStatements, slots: list[str]) -> list[str]:
    """Release concurrency-group slots; returns the slots this session did not hold."""
    return [row["s"] for row in await connection.fetch(statements.unlock_slots, slots)]


async def relock_slots(connection: Any, statements: BatchStatements, slots: list[str]) -> list[str]:
    """Take slots again on a new session; returns the slots someone else holds now."""
    return [row["s"] for row in await connection.fetch(statements.relock_slots, slots)]


async def release_unowned_locks(
    connection: Any,
    statements: BatchStatements,
    owned_keys: list[str],
    owned_slots: list[str] | None = None,
) -> None:
    """Drop every advisory lock of this session that is neither in `owned_keys` nor a slot
    in `owned_slots`."""
    await connection.execute(statements.reconcile, owned_keys, owned_slots or [])


async def ping(connection: Any) -> None:
    """A trivial round trip: fails when the connection (and so its session locks) is gone."""
    await connection.execute("SELECT 1")
