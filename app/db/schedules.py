"""All SQL about dl_schedules. Functions flush, never commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, case, delete, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import DlSchedule

schedules = cast(Table, DlSchedule.__table__)

_DUE = or_(DlSchedule.next_run_at.is_(None), DlSchedule.next_run_at <= func.now())

# Every write that may move a fire time sends a notice here in its own transaction, so the
# leader's scheduler, asleep until the next fire time it knows of, looks again at once; a
# change that rolls back notifies nobody. An operator who edits dl_schedules by hand can
# send one too (`SELECT pg_notify('dl_schedules_changed', '')`); without it the change is
# seen within DL_SCHEDULE_PERIOD_SEC.
CHANGES_CHANNEL = "dl_schedules_changed"


async def announce_change(session: AsyncSession, name: str) -> None:
    """Notify CHANGES_CHANNEL when the session's transaction commits (payload: the name)."""
    await session.execute(select(func.pg_notify(CHANGES_CHANNEL, name)))


async def db_now(session: AsyncSession) -> datetime:
    """The database clock at the start of the session's transaction (`now()`)."""
    value: datetime = (await session.execute(select(func.now()))).scalar_one()
    return value


async def insert_schedule(session: AsyncSession, values: dict[str, Any]) -> DlSchedule | None:
    """Insert a schedule; None when its name is taken."""
    statement = (
        insert(schedules)
        .values(schedule_id=uuid.uuid4(), **values)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(schedules.c.schedule_id)
    )
    schedule_id = (await session.execute(statement)).scalar_one_or_none()
    if schedule_id is None:
        return None
    return await session.get(DlSchedule, schedule_id)


async def get_schedule(
    session: AsyncSession, name: str, *, for_update: bool = False
) -> DlSchedule | None:
    """The schedule called `name`; with for_update, its row stays locked until commit."""
    statement = select(DlSchedule).where(DlSchedule.name == name)
    if for_update:
        statement = statement.with_for_update()
    return (
        await session.execute(statement.execution_options(populate_existing=True))
    ).scalar_one_or_none()


async def list_schedules(
    session: AsyncSession, *, after: str | None, limit: int
) -> list[DlSchedule]:
    """Schedules ordered by name, starting after the name `after` (keyset pagination)."""
    statement = select(DlSchedule).order_by(DlSchedule.name).limit(limit)
    if after is not None:
        statement = statement.where(DlSchedule.name > after)
    return list((await session.execute(statement)).scalars())


async def update_schedule(
    session: AsyncSession, schedule_id: uuid.UUID, values: dict[str, Any]
) -> None:
    """Set `values` on the schedule and stamp updated_at."""
    await session.execute(
        update(schedules)
        .where(schedules.c.schedule_id == schedule_id)
        .values(**values, updated_at=func.now())
    )


async def delete_schedule(session: AsyncSession, name: str) -> bool:
    """Delete the schedule called `name`; whether it existed."""
    result = await session.execute(
        delete(schedules).where(schedules.c.name == name).returning(schedules.c.schedule_id)
    )
    return result.first() is not None


async def earliest_schedule_times(
    session: AsyncSession, limit: int
) -> list[tuple[uuid.UUID, float | None]]:
    """The first `limit` enabled schedules by fire time, each with the seconds until it.

    Seconds are by the database clock: zero or less means due, None that the schedule
    needs a baseline (those come first). The scheduler reads, in this one statement, what
    is due now and when the next fire time comes.
    """
    statement = (
        select(
            DlSchedule.schedule_id,
            func.extract("epoch", DlSchedule.next_run_at - func.now()),
        )
        .where(DlSchedule.enabled)
        .order_by(DlSchedule.next_run_at.asc().nulls_first())
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [(row[0], None if row[1] is None else float(row[1])) for row in rows]


async def lock_if_due(session: AsyncSession, schedule_id: uuid.UUID) -> DlSchedule | None:
    """The schedule, row-locked, if it is still enabled and due; None if not, or if busy.

    SKIP LOCKED: a schedule another transaction is firing (or an operator is editing) is
    left to that transaction; it is no longer due once that one commits.
    """
    statement = (
        select(DlSchedule)
        .where(DlSchedule.schedule_id == schedule_id, DlSchedule.enabled, _DUE)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


_TEMPLATE_COLUMNS = (
    "cron",
    "timezone",
    "queue",
    "task",
    "args",
    "lock_key",
    "priority",
    "max_attempts",
    "lease_ttl_sec",
)


async def upsert_code_schedule(session: AsyncSession, values: dict[str, Any]) -> str:
    """Insert or refresh a schedule declared in code: 'created', 'updated', 'unchanged' or 'taken'.

    'taken': a schedule of that name was made over HTTP and is left alone. `enabled` is
    never overwritten (operators own it). A new cron or zone clears next_run_at, so the
    leader sets a fresh baseline instead of firing at the old time.
    """
    statement = insert(schedules).values(schedule_id=uuid.uuid4(), source="code", **values)
    new = statement.excluded
    retimed = or_(
        schedules.c.cron.is_distinct_from(new.cron),
        schedules.c.timezone.is_distinct_from(new.timezone),
    )
    changed = or_(*(schedules.c[name].is_distinct_from(new[name]) for name in _TEMPLATE_COLUMNS))
    upsert = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={
            **{name: new[name] for name in _TEMPLATE_COLUMNS},
            "next_run_at": case((retimed, None), else_=schedules.c.next_run_at),
            "last_error": case((retimed, None), else_=schedules.c.last_error),
            "updated_at": func.now(),
        },
        where=and_(schedules.c.source == "code", changed),
    ).returning(literal_column("xmax") == 0)
    inserted = (await session.execute(upsert)).scalar_one_or_none()
    if inserted is not None:
        return "created" if inserted else "updated"
    source = (
        await session.execute(select(schedules.c.source).where(schedules.c.name == values["name"]))
    ).scalar_one()
    return "unchanged" if source == "code" else "taken"
