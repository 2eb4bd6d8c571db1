"""All SQL about dl_workers: the live workers and what they serve. Functions flush, never commit.

A worker writes its own row when it starts (with its version and tasks), refreshes it
periodically in the statement that also reads its live peers, and deletes it when it stops
cleanly. A worker that died keeps its row until it is older than the liveness window;
readers ignore such rows, and the leader's retention deletes them once long expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Table,
    and_,
    column,
    delete,
    exists,
    func,
    literal,
    literal_column,
    null,
    select,
    table,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import OID, insert
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
    version: str = ""
    tasks: dict[str, Any] | None = None  # task -> JSON schema of its args, or None


@dataclass(frozen=True)
class LivePeer:
    """A worker seen within the liveness window, and the queues it serves."""

    worker_id: str
    queues: dict[str, int]


@dataclass(frozen=True)
class Refreshed:
    """The live workers, and whether this worker's row had to be written anew (it was gone)."""

    live: list[LivePeer]
    row_was_missing: bool


async def refresh_in_session(
    session: AsyncSession, me: WorkerRow, live_within: timedelta, *, register: bool = False
) -> Refreshed:
    """Upsert this worker's row and read every live worker (this one included), in one statement.

    With `register` (at start) the row also gets the version and tasks and a new
    started_at; a periodic refresh leaves them as they are, and says when the row was
    missing (deleted meanwhile), so the caller registers again.

    The upsert's new row is not visible to the same statement's read (one snapshot), so this
    worker is added to the answer from `me` rather than read back.
    """
    values: dict[str, Any] = {
        "worker_id": me.worker_id,
        "host": me.host,
        "pid": me.pid,
        "queues": me.queues,
        "started_at": func.now(),
        "last_seen_at": func.now(),
    }
    on_conflict: dict[str, Any] = {
        "host": me.host,
        "pid": me.pid,
        "queues": me.queues,
        "last_seen_at": func.now(),
    }
    if register:
        registered = {"version": me.version, "tasks": me.tasks or {}}
        values.update(registered)
        on_conflict.update(registered, started_at=func.now())
    upsert = (
        insert(workers)
        .values(**values)
        .on_conflict_do_update(index_elements=[workers.c.worker_id], set_=on_conflict)
        # xmax is 0 on a row this statement inserted, not on one it updated.
        .returning(workers.c.worker_id, literal_column("xmax = 0", Boolean).label("inserted"))
        .cte("upserted")
    )
    peers = select(
        workers.c.worker_id, workers.c.queues, null().cast(Boolean).label("inserted")
    ).where(workers.c.last_seen_at > cutoff(live_within), workers.c.worker_id != me.worker_id)
    # Referencing the CTE keeps it in the statement (an unreferenced insert CTE still runs,
    # but SQLAlchemy only renders the CTEs a statement uses).
    mine = select(upsert.c.worker_id, null().label("queues"), upsert.c.inserted)
    rows = (await session.execute(union_all(peers, mine))).all()
    live = [LivePeer(row.worker_id, dict(row.queues)) for row in rows if row.queues is not None]
    missing = any(row.inserted for row in rows if row.queues is None)
    return Refreshed([*live, LivePeer(me.worker_id, dict(me.queues))], missing and not register)


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker as stored, and whether it holds the maintenance leadership now."""

    worker_id: str
    host: str
    pid: int
    version: str
    queues: dict[str, int]
    tasks: dict[str, Any]
    started_at: datetime
    last_seen_at: datetime
    leader: bool


def _holds_lock(lock_id: int, application_name: Any) -> Any:
    """Whether the session named `application_name` holds the session advisory lock `lock_id`.

    pg_locks shows a bigint advisory lock as its high and low 32 bits (objsubid 1).
    """
    locks = table(
        "pg_locks",
        column("locktype"),
        column("classid"),
        column("objid"),
        column("objsubid"),
        column("granted"),
        column("pid"),
    )
    activity = table("pg_stat_activity", column("pid"), column("application_name"))
    return exists(
        select(literal(1))
        .select_from(locks.join(activity, activity.c.pid == locks.c.pid))
        .where(
            and_(
                locks.c.locktype == "advisory",
                locks.c.granted,
                locks.c.objsubid == 1,
                locks.c.classid == literal(lock_id >> 32).cast(OID),
                locks.c.objid == literal(lock_id & 0xFFFFFFFF).cast(OID),
                activity.c.application_name == application_name,
            )
        )
    )


async def live_workers(
    session: AsyncSession,
    live_within: timedelta,
    *,
    leader_lock_id: int,
    leader_session_prefix: str,
    name_length: int,
) -> list[WorkerInfo]:
    """Every worker seen within `live_within`, by worker_id.

    A worker leads when its session named `leader_session_prefix` + its id (cut to
    `name_length`, as PostgreSQL keeps it) holds `leader_lock_id`.
    """
    session_name = func.left(literal(leader_session_prefix) + workers.c.worker_id, name_length)
    rows = await session.execute(
        select(
            workers.c.worker_id,
            workers.c.host,
            workers.c.pid,
            workers.c.version,
            workers.c.queues,
            workers.c.tasks,
            workers.c.started_at,
            workers.c.last_seen_at,
            _holds_lock(leader_lock_id, session_name).label("leader"),
        )
        .where(workers.c.last_seen_at > cutoff(live_within))
        .order_by(workers.c.worker_id)
    )
    return [
        WorkerInfo(
            worker_id=row.worker_id,
            host=row.host,
            pid=row.pid,
            version=row.version,
            queues=dict(row.queues),
            tasks=dict(row.tasks),
            started_at=row.started_at,
            last_seen_at=row.last_seen_at,
            leader=bool(row.leader),
        )
        for row in rows
    ]


async def consumers_per_queue(session: AsyncSession, live_within: timedelta) -> dict[str, int]:
    """How many live workers serve each queue (queues nobody serves are absent)."""
    queue = func.jsonb_object_keys(workers.c.queues).table_valued("value").render_derived("queue")
    rows = await session.execute(
        select(queue.c.value, func.count())
        .select_from(workers)
        .join(queue, true())
        .where(workers.c.last_seen_at > cutoff(live_within))
        .group_by(queue.c.value)
    )
    return {str(row[0]): int(row[1]) for row in rows}


async def live_task_names(session: AsyncSession, live_within: timedelta) -> set[str]:
    """The tasks some live worker registered."""
    task = func.jsonb_object_keys(workers.c.tasks).table_valued("value").render_derived("task")
    rows = await session.execute(
        select(task.c.value)
        .distinct()
        .select_from(workers)
        .join(task, true())
        .where(workers.c.last_seen_at > cutoff(live_within))
    )
    return set(rows.scalars())


async def live_holders_of_task(
    session: AsyncSession, task: str, live_within: timedelta
) -> dict[str, list[str]]:
    """Live workers that registered `task`: worker_id -> the queues it serves."""
    rows = await session.execute(
        select(workers.c.worker_id, workers.c.queues).where(
            workers.c.last_seen_at > cutoff(live_within), workers.c.tasks.has_key(task)
        )
    )
    return {row.worker_id: sorted(row.queues) for row in rows}


async def delete_expired_in_session(session: AsyncSession, unseen_for: timedelta) -> int:
    """Delete rows of workers not seen for `unseen_for` (long dead); how many went."""
    result = await session.execute(
        delete(workers).where(workers.c.last_seen_at < cutoff(unseen_for))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def remove_in_session(session: AsyncSession, worker_id: str) -> None:
    """Delete this worker's row: it stops serving now, not when its row grows stale."""
    await session.execute(delete(workers).where(workers.c.worker_id == worker_id))
