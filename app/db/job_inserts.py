"""New jobs in one statement: dl_jobs rows, their pgqueuer dispatches and first events.

One statement for any number of jobs, sent through the caller's SQLAlchemy session so it
joins the caller's transaction: the jobs exist exactly when that transaction commits, and
pgqueuer's statement-level NOTIFY trigger fires once per batch, not once per job.

The pgqueuer rows are written the way pgqueuer's own enqueue writes them (id from its
sequence, a `queued` log row), so pgqueuer cannot tell them apart; writing them here lets
the dl row carry its dispatch id from the start instead of being updated afterwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import UUID, DateTime, Integer, Text

from app.db.pgqueuer_schema import pgqueuer_settings
from app.db.queue_queries import PARKED_PREFIX
from app.domain.states import JobEvent, JobStatus


@dataclass(frozen=True)
class NewJob:
    """The dl_jobs columns a caller chooses for a new job."""

    job_id: uuid.UUID
    queue: str
    task: str
    args: dict[str, Any]
    idempotency_key: str | None
    lock_key: str
    partition_key: str | None
    priority: int
    max_attempts: int
    lease_ttl_sec: int
    producer: str | None
    consumer_group: str | None
    available_at: datetime | None


@dataclass(frozen=True)
class InsertOutcome:
    """Per input job, in input order: created, or skipped for an existing idempotency_key."""

    job_id: uuid.UUID
    created: bool


_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("job_id", UUID(as_uuid=True)),
    ("queue", Text()),
    ("task", Text()),
    ("args", JSONB()),
    ("idempotency_key", Text()),
    ("lock_key", Text()),
    ("partition_key", Text()),
    ("priority", Integer()),
    ("max_attempts", Integer()),
    ("lease_ttl_sec", Integer()),
    ("producer", Text()),
    ("consumer_group", Text()),
    ("available_at", DateTime(timezone=True)),
)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@cache
def _statement(schema: str) -> TextClause:
    jobs = f"{_quote_ident(schema)}.dl_jobs"
    events = f"{_quote_ident(schema)}.dl_job_events"
    queues = f"{_quote_ident(schema)}.dl_queues"
    pgq = pgqueuer_settings(schema).qualified
    names = ", ".join(name for name, _ in _COLUMNS)
    typed = ", ".join(
        f"CAST(:{name} AS {_pg_array(kind)})" for name, kind in _COLUMNS
    )  # unnest needs the element types spelled out
    sql = f"""
        WITH input AS MATERIALIZED (
            SELECT nextval((SELECT pg_get_serial_sequence('{pgq.queue_table}', 'id'))) AS pgq_id,
                   t.*
            FROM unnest({typed}) WITH ORDINALITY AS t({names}, ord)
        ),
        new_jobs AS (
            INSERT INTO {jobs} (job_id, queue, task, args, idempotency_key, lock_key,
                partition_key, priority, max_attempts, lease_ttl_sec, producer, consumer_group,
                available_at, status, pgq_job_id)
            SELECT job_id, queue, task, args, idempotency_key, lock_key, partition_key, priority,
                   max_attempts, lease_ttl_sec, producer, consumer_group,
                   coalesce(available_at, now()), '{JobStatus.QUEUED.value}', pgq_id
            -- Key order, so two calls sharing keys wait on each other without deadlock;
            -- among items sharing a key the first in the call wins.
            FROM input ORDER BY idempotency_key, ord
            ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING job_id, queue, task, priority, available_at, pgq_job_id
        ),
        paused AS MATERIALIZED (
            -- A paused queue's dispatches are parked (app.db.queue_queries). FOR SHARE
            -- makes a concurrent resume wait for this transaction, so it sees them.
            -- dl_queues is tiny and holds a row only for queues ever paused.
            SELECT q.queue FROM {queues} q
            WHERE q.queue = ANY(CAST(:queue AS text[])) AND q.paused
            FOR SHARE
        ),
        dispatched AS (
            -- pgqueuer runs higher priorities first; ours run lower numbers first.
            INSERT INTO {pgq.queue_table}
                (id, priority, entrypoint, payload, execute_after, status)
            SELECT pgq_job_id, -priority,
                   CASE WHEN queue IN (SELECT queue FROM paused)
                        THEN '{PARKED_PREFIX}' || queue ELSE queue END,
                   uuid_send(job_id), greatest(available_at, now()), 'queued'
            FROM new_jobs
            RETURNING id, entrypoint, priority
        ),
        dispatch_logged AS (
            INSERT INTO {pgq.queue_table_log} (job_id, status, entrypoint, priority)
            SELECT id, 'queued', entrypoint, priority FROM dispatched
        ),
        logged AS (
            INSERT INTO {events} (job_id, event, attempt, details)
            SELECT job_id, '{JobEvent.QUEUED.value}', 0,
                   jsonb_build_object('queue', queue, 'task', task)
            FROM new_jobs
        )
        SELECT job_id FROM new_jobs
    """
    return text(sql).bindparams(*(bindparam(name, type_=ARRAY(kind)) for name, kind in _COLUMNS))


def _pg_array(kind: Any) -> str:
    names = {UUID: "uuid", Text: "text", JSONB: "jsonb", Integer: "int", DateTime: "timestamptz"}
    return names[type(kind)] + "[]"


async def insert_jobs_in_session(
    session: AsyncSession, schema: str, new_jobs: list[NewJob]
) -> list[InsertOutcome]:
    """Write the jobs in the session's transaction; nothing is committed here."""
    params = {name: [getattr(job, name) for job in new_jobs] for name, _ in _COLUMNS}
    result = await session.execute(_statement(schema), params)
    created = {row[0] for row in result}
    return [InsertOutcome(job.job_id, job.job_id in created) for job in new_jobs]
