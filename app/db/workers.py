"""All SQL about dl_workers: the live workers and what they serve. Functions flush, never commit.

A worker writes its own row when it starts, refreshes it periodically in the statement that
also reads its live peers, and deletes it when it stops cleanly. A worker that died keeps
its row until it is older than the liveness window; readers ignore such rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, delete, func, null, select, union_all
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlWorker
from app.db.sql_common import cutoff

workers = cast(Table, DlWorker.__table__)


@dataclass(frozen=True)
class WorkerRow:
    """What a worker says about itself."""

    worker_id: str
    host: str
    pid: int
    queues: dict[str, int]  # queue -> concurrency


@dataclass(frozen=True)
class LivePeer:
    """A worker seen within the liveness window, and the queues it serves."""

    worker_id: str
    queues: dict[str, int]


async def refresh_in_session(
    session: AsyncSession, me: WorkerRow, live_within: timedelta
) -> list[LivePeer]:
    """Upsert this worker's row and read every live worker (this one included), in one statement.

    The upsert's new row is not visible to the same statement's read (one snapshot), so this
    worker is added to the answer from `me` rather than read back.
    """
    upsert = (
        insert(workers)
        .values(
            worker_id=me.worker_id,
            host=me.host,
            pid=me.pid,
            queues=me.queues,
            started_at=func.now(),
            last_seen_at=func.now(),
        )
        .on_conflict_do_update(
            index_elements=[workers.c.worker_id],
            set_={"host": me.host, "pid": me.pid, "queues": me.queues, "last_seen_at": func.now()},
        )
        .returning(workers.c.worker_id)
        .cte("upserted")
    )
    peers = select(workers.c.worker_id, workers.c.queues).where(
        workers.c.last_seen_at > cutoff(live_within), workers.c.worker_id != me.worker_id
    )
    # Referencing the CTE keeps it in the statement (an unreferenced insert CTE still runs,
    # but SQLAlchemy only renders the CTEs a statement uses).
    mine = select(upsert.c.worker_id, null().label("queues"))
    rows = (await session.execute(union_all(peers, mine))).all()
    live = [LivePeer(row.worker_id, dict(row.queues)) for row in rows if row.queues is not None]
    return [*live, LivePeer(me.worker_id, dict(me.queues))]


async def remove_in_session(session: AsyncSession, worker_id: str) -> None:
    """Delete this worker's row: it stops serving now, not when its row grows stale."""
    await session.execute(delete(workers).where(workers.c.worker_id == worker_id))
