"""All SQL about dl_batches: a new batch, its state, the batches of jobs, and retention.
Functions flush, never commit. How a batch completes is told in app.db.batch_functions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlBatch, DlJob
from app.db.sql_common import cutoff, quote_ident
from app.domain.batches import BatchCounts, BatchView

batches = cast(Table, DlBatch.__table__)
jobs = cast(Table, DlJob.__table__)


async def insert_batch(
    session: AsyncSession, batch_id: uuid.UUID, total: int, callback: dict[str, Any]
) -> None:
    """The batch of `total` jobs just created with `batch_id`, waiting for all of them."""
    await session.execute(
        insert(batches).values(batch_id=batch_id, total=total, pending=total, callback=callback)
    )


async def complete_now(session: AsyncSession, schema: str, batch_id: uuid.UUID) -> None:
    """Complete a batch that has no job to wait for: its callback is created now."""
    await session.execute(
        text(f"SELECT {quote_ident(schema)}.dl_batch_complete(:batch_id)"),
        {"batch_id": batch_id},
    )


async def batches_of(session: AsyncSession, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The batches the jobs belong to (none for jobs outside any)."""
    rows = await session.execute(
        select(jobs.c.batch_id)
        .where(jobs.c.job_id.in_(job_ids), jobs.c.batch_id.is_not(None))
        .distinct()
    )
    return {row.batch_id for row in rows}


async def get_batch(session: AsyncSession, batch_id: uuid.UUID) -> BatchView | None:
    """The batch as it stands, or None."""
    row = (await session.execute(select(batches).where(batches.c.batch_id == batch_id))).first()
    if row is None:
        return None
    return BatchView(
        batch_id=row.batch_id,
        total=row.total,
        pending=row.pending,
        counts=BatchCounts(
            succeeded=row.succeeded, failed=row.failed, canceled=row.canceled, lost=row.lost
        ),
        callback_job_id=row.callback_job_id,
        callback_error=row.callback_error,
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


async def delete_old_batches(session: AsyncSession, retention: timedelta, limit: int) -> int:
    """Completed batches older than `retention`, `limit` at most; how many were deleted."""
    old = (
        select(batches.c.batch_id)
        .where(batches.c.completed_at < cutoff(retention))
        .order_by(batches.c.completed_at)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(delete(batches).where(batches.c.batch_id.in_(old)))
    return int(cast(CursorResult[Any], result).rowcount or 0)
