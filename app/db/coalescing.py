"""All SQL about joining a queued job: a coalescing trigger finds it, holds it, logs the join.

A coalescing trigger whose insert uq_dl_jobs_coalescing_queued skipped joins the job queued
for its (queue, task, lock_key). That job must not start before the trigger's transaction
commits (the transaction may write what the job is to see), yet the trigger must not lock
the job's row: a worker's start would then wait on a caller's transaction. So the trigger
holds a shared transaction-level advisory lock on the job (seed JOIN_SEED), and a worker's
start tries it exclusively without waiting (app.db.job_batches): while a trigger that
joined the job is open, the job does not start; it waits (event `trigger_open`).

The protocol, the same in Python (app.jobs.manager) and in dl_enqueue():
1. insert with ON CONFLICT DO NOTHING: created, or skipped;
2. an idempotency_key already used answers as it always does (idempotency first);
3. find the queued coalescing job: held since before step 1, it is joined (`coalesced`
   event); otherwise it is held now, and the trigger goes back to step 1.
Step 1 after the hold proves through the index (which sees the newest state, whatever the
caller's isolation level) that the job is still queued; under REPEATABLE READ a job that
changed after the snapshot makes it a serialization failure. A job that started between
two steps is not found, or no longer in the way: the trigger then creates a new job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import UUID, DateTime, Integer, Text

from app.db.sql_common import qualified
from app.domain.states import JobEvent, JobStatus

# The hash seed of join holds; lock_key locks use 0, concurrency-group slots 1.
JOIN_SEED = 2
# The fields a trigger asks for that a joined job keeps as it has them: the answer's
# `differs` names those that differ, in this order. queue, task and lock_key are the join's
# own; available_at is compared only when the trigger gave one (omitted means "now").
COMPARED = (
    "args",
    "priority",
    "available_at",
    "max_attempts",
    "lease_ttl_sec",
    "partition_key",
    "producer",
    "consumer_group",
    "concurrency_key",
    "concurrency_limit",
    "rate_key",
)
# Tries of the protocol before giving up: each extra one needs a start of the job found
# between two statements of this trigger, so two are the most seen in practice.
MAX_JOIN_TRIES = 20


def hold_key(job_id: str) -> str:
    """SQL: the advisory-lock key of a join hold on the job `job_id` (an SQL expression)."""
    return f"hashtextextended(({job_id})::text, {JOIN_SEED})"


def differs_sql(job: str, value: Callable[[str], str]) -> str:
    """SQL: the names of COMPARED fields in which row `job` differs from the trigger's values.

    `value(name)` is the SQL expression of the trigger's value of a field. args compare as
    jsonb text, like the idempotency fingerprint: 1 and 1.0 differ.
    """
    terms = []
    for name in COMPARED:
        mine, theirs = f"{job}.{name}", value(name)
        if name == "args":
            differs = f"{mine}::text IS DISTINCT FROM {theirs}::text"
        elif name == "available_at":
            differs = f"{theirs} IS NOT NULL AND {mine} IS DISTINCT FROM {theirs}"
        else:
            differs = f"{mine} IS DISTINCT FROM {theirs}"
        terms.append(f"CASE WHEN {differs} THEN '{name}' END")
    return f"array_remove(ARRAY[{', '.join(terms)}]::text[], NULL)"


def event_details_sql(differs: str, value: Callable[[str], str], extra: str) -> str:
    """SQL: the `coalesced` event's details: what differs, who asked, and `extra` (jsonb)."""
    return (
        f"jsonb_build_object('differs', to_jsonb({differs}))"
        f" || jsonb_strip_nulls(jsonb_build_object("
        f"'producer', {value('producer')}, 'idempotency_key', {value('idempotency_key')}))"
        f" || {extra}"
    )


_WANTED: tuple[tuple[str, Any], ...] = (
    ("ord", Integer()),
    ("queue", Text()),
    ("task", Text()),
    ("lock_key", Text()),
    ("idempotency_key", Text()),
    ("args", JSONB()),
    ("priority", Integer()),
    ("available_at", DateTime(timezone=True)),
    ("max_attempts", Integer()),
    ("lease_ttl_sec", Integer()),
    ("partition_key", Text()),
    ("producer", Text()),
    ("consumer_group", Text()),
    ("concurrency_key", Text()),
    ("concurrency_limit", Integer()),
    ("rate_key", Text()),
    ("details", JSONB()),
)
_SQL_TYPES = {Integer: "int", Text: "text", JSONB: "jsonb", DateTime: "timestamptz"}


@cache
def _join_statement(schema: str) -> TextClause:
    """Find each trigger's queued job; join the ones held before, hold the others."""
    names = ", ".join(name for name, _ in _WANTED)
    typed = ", ".join(f"CAST(:{name} AS {_SQL_TYPES[type(kind)]}[])" for name, kind in _WANTED)
    differs = differs_sql("j", lambda name: f"w.{name}")
    sql = f"""
        WITH want AS (
            SELECT * FROM unnest({typed}) AS w({names})
        ),
        found AS MATERIALIZED (
            SELECT w.ord, j.job_id, j.attempt, j.job_id = ANY(CAST(:held AS uuid[])) AS joined,
                   {differs} AS differs,
                   {event_details_sql(differs, lambda name: f"w.{name}", "w.details")} AS details
            FROM want w
            JOIN {qualified(schema, "dl_jobs")} j
              ON j.queue = w.queue AND j.task = w.task AND j.lock_key = w.lock_key
             AND j.status = '{JobStatus.QUEUED.value}' AND j.coalescing
        ),
        holds AS MATERIALIZED (
            -- Shared: triggers joining one job never wait for each other, only for a
            -- start that is trying the job this instant (one statement's time).
            SELECT pg_advisory_xact_lock_shared({hold_key("f.job_id")})
            FROM found f WHERE NOT f.joined
        ),
        logged AS (
            INSERT INTO {qualified(schema, "dl_job_events")} (job_id, event, attempt, details)
            SELECT f.job_id, '{JobEvent.COALESCED.value}', f.attempt, f.details
            FROM found f WHERE f.joined
        )
        -- Listing `holds` makes it run: a SELECT in WITH runs only when read.
        SELECT f.ord, f.job_id, f.joined, f.differs
        FROM found f, (SELECT count(*) FROM holds) AS held
    """
    return text(sql).bindparams(
        *(bindparam(name, type_=ARRAY(kind)) for name, kind in _WANTED),
        bindparam("held", type_=ARRAY(UUID(as_uuid=True))),
    )


@dataclass(frozen=True)
class JoinRequest:
    """A coalescing trigger not created: its position, its job's columns, its event's extra."""

    ord: int
    # The new job it asked for (app.db.jobs.NewJob: read by column name).
    job: object
    details: Mapping[str, Any]


@dataclass(frozen=True)
class Found:
    """The queued job a trigger found; `joined` when it was held before and is now joined."""

    job_id: uuid.UUID
    joined: bool
    differs: list[str]


async def find_and_hold(
    session: AsyncSession,
    schema: str,
    requests: Sequence[JoinRequest],
    held: Collection[uuid.UUID],
) -> dict[int, Found]:
    """Step 3 of the protocol for each request, in the session's transaction; by `ord`.

    A request missing from the answer found no queued job (it started meanwhile).
    """
    params: dict[str, Any] = {
        name: [getattr(r.job, name) for r in requests]
        for name, _ in _WANTED
        if name not in ("ord", "details")
    }
    params["ord"] = [r.ord for r in requests]
    params["details"] = [dict(r.details) for r in requests]
    params["held"] = list(held)
    result = await session.execute(_join_statement(schema), params)
    return {row.ord: Found(row.job_id, row.joined, list(row.differs)) for row in result}
