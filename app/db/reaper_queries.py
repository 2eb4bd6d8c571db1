"""SQL the reaper uses to find jobs whose lease expired or whose dispatch is missing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from sqlalchemy import BigInteger, Table, column, exists, func, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlJob
from app.domain.states import JobStatus

jobs = cast(Table, DlJob.__table__)
# pgqueuer's job table; unqualified so the engine's schema_translate_map places it.
pgqueuer_jobs = table("pgqueuer", column("id", BigInteger))


@dataclass(frozen=True)
class ExpiredLease:
    """A running job whose lease ran out."""

    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    worker_id: str | None


@dataclass(frozen=True)
class Undispatched:
    """A queued job with no pgqueuer row to wake a worker for it."""

    job_id: uuid.UUID
    queue: str
    priority: int
    delay: timedelta


async def lock_expired_leases(session: AsyncSession, limit: int) -> list[ExpiredLease]:
    """Running jobs past their lease, locked for this transaction (others skip them)."""
    rows = await session.execute(
        select(jobs.c.job_id, jobs.c.attempt, jobs.c.max_attempts, jobs.c.worker_id)
        .where(jobs.c.status == JobStatus.RUNNING, jobs.c.lease_expires_at < func.now())
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [ExpiredLease(**row._asdict()) for row in rows]


async def lock_undispatched(session: AsyncSession, limit: int) -> list[Undispatched]:
    """Queued jobs whose pgqueuer row is gone, locked for this transaction."""
    has_dispatch = exists().where(pgqueuer_jobs.c.id == jobs.c.pgq_job_id)
    rows = await session.execute(
        select(
            jobs.c.job_id,
            jobs.c.queue,
            jobs.c.priority,
            func.greatest(jobs.c.available_at - func.now(), timedelta(0)).label("delay"),
        )
        .where(jobs.c.status == JobStatus.QUEUED, ~has_dispatch)
        .limit(limit)
        .with_for_update(of=jobs, skip_locked=True)
    )
    return [Undispatched(**row._asdict()) for row in rows]
