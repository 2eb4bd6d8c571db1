"""Firing one due schedule: its job and its next fire time, in the caller's transaction.

The leader calls fire_if_due_in_session() once per due schedule, each in a transaction of
its own. The job is created through enqueue_in_session(), the path every job takes, and
next_run_at moves on in the same transaction, so a crash between the two cannot fire the
schedule twice. The job's idempotency_key names the schedule and its fire time, which makes
that doubly sure: a second firing of the same instance returns the first job.

The key lives in the service's reserved namespace (`dl:`, app.domain.idempotency), which
clients cannot write: nobody can create a job under a future fire time's key first and have
the schedule adopt it. Keys of the earlier format (`schedule:<id>:<time>`, before that
namespace) are ordinary client keys now; it is next_run_at, not the key, that keeps a fire
time already fired under them from firing again.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import schedules
from app.domain.cron import parse_cron
from app.domain.errors import IdempotencyConflictError, InvalidJobError, InvalidScheduleError
from app.domain.idempotency import RESERVED_PREFIX
from app.domain.schedules import job_spec_of
from app.jobs.enqueue import enqueue_in_session
from app.settings import Settings


class FireKind(enum.Enum):
    """What happened to one schedule the leader found due."""

    FIRED = "fired"  # a job was created (or found, for an instance already fired)
    BASELINED = "baselined"  # next_run_at was NULL: set to the next fire time, nothing fired
    DISABLED = "disabled"  # its cron or time zone cannot be read: disabled, last_error set
    SKIPPED_INSTANCE = "skipped_instance"  # its job template is invalid: this instance skipped
    NOT_DUE = "not_due"  # another transaction fired or changed it meanwhile


@dataclass(frozen=True)
class FireOutcome:
    """One schedule's outcome, for the leader's log and counters."""

    kind: FireKind
    name: str = ""
    fire_time: datetime | None = None
    job_id: uuid.UUID | None = None
    created: bool = False
    error: str | None = None
    # Seconds by the database clock until the schedule's new fire time; None: it has none
    # (disabled), or this firing did not set it (NOT_DUE).
    next_due_in_sec: float | None = None


def _seconds_between(now: datetime, later: datetime) -> float:
    return (later - now).total_seconds()


def instance_key(schedule_id: uuid.UUID, fire_time: datetime) -> str:
    """The idempotency_key of the job for one fire time of one schedule."""
    return f"{RESERVED_PREFIX}schedule:{schedule_id}:{fire_time.astimezone(UTC).isoformat()}"


async def fire_if_due_in_session(
    session: AsyncSession, schedule_id: uuid.UUID, settings: Settings
) -> FireOutcome:
    """Fire the schedule if it is still due, and move its next_run_at past now.

    After downtime it fires once, for the earliest missed fire time, and next_run_at jumps
    to the first fire time after now: one job for the missed window, not one per missed tick.
    """
    row = await schedules.lock_if_due(session, schedule_id)
    if row is None:
        return FireOutcome(FireKind.NOT_DUE)
    now = await schedules.db_now(session)
    try:
        rule = parse_cron(row.cron, row.timezone)
    except InvalidScheduleError as error:
        # Disabled, so the next tick does not find it again: the error is recorded once.
        await schedules.update_schedule(
            session,
            row.schedule_id,
            {"enabled": False, "next_run_at": None, "last_error": error.message},
        )
        return FireOutcome(FireKind.DISABLED, row.name, error=error.message)
    if row.next_run_at is None:
        baseline = rule.next_after(now)
        await schedules.update_schedule(session, row.schedule_id, {"next_run_at": baseline})
        return FireOutcome(
            FireKind.BASELINED, row.name, next_due_in_sec=_seconds_between(now, baseline)
        )
    fire_time = row.next_run_at
    next_run_at = rule.next_after(max(now, fire_time))
    spec = job_spec_of(row, idempotency_key=instance_key(row.schedule_id, fire_time))
    try:
        result = await enqueue_in_session(session, spec, settings, internal=True)
        job_id, created = result.job_id, result.created
    except InvalidJobError as error:
        # Checked before anything is written. Retrying each tick would not help (an unknown
        # task, args the pipeline refuses): skip this instance, keep the schedule.
        message = f"not fired at {fire_time.isoformat()}: {error.message}"
        await schedules.update_schedule(
            session, row.schedule_id, {"next_run_at": next_run_at, "last_error": message}
        )
        return FireOutcome(
            FireKind.SKIPPED_INSTANCE,
            row.name,
            fire_time,
            error=message,
            next_due_in_sec=_seconds_between(now, next_run_at),
        )
    except IdempotencyConflictError as conflict:
        # This instance already has its job, made before the template was changed: it fired
        # (nothing was written now). Only our own firings can hold the reserved key.
        job_id, created = conflict.job_id, False
    await schedules.update_schedule(
        session,
        row.schedule_id,
        {
            "next_run_at": next_run_at,
            "last_run_at": now,
            "last_job_id": job_id,
            "last_error": None,
        },
    )
    return FireOutcome(
        FireKind.FIRED,
        row.name,
        fire_time,
        job_id=job_id,
        created=created,
        next_due_in_sec=_seconds_between(now, next_run_at),
    )


ERROR_LIMIT = 500
CHANGES_CHANNEL = schedules.CHANGES_CHANNEL


@dataclass(frozen=True)
class DueSchedules:
    """One look at dl_schedules: the schedules due now, and when the next one is."""

    due: list[uuid.UUID]
    # Seconds by the database clock until the earliest enabled fire time beyond `due`:
    # zero when more are due than one look takes, None when there is none.
    next_due_in_sec: float | None


@dataclass
class ScheduleFiring:
    """What the leader's scheduler asks of the database: due schedules, one fire each."""

    sessions: async_sessionmaker[AsyncSession]
    # What fired jobs are created with (the same defaults as a trigger's).
    settings: Settings

    async def look(self, limit: int) -> DueSchedules:
        """Up to `limit` schedules due by the database clock, and the next fire time after them.

        One statement: the first `limit` + 1 enabled schedules by fire time.
        """
        async with self.sessions() as session:
            rows = await schedules.earliest_schedule_times(session, limit + 1)
        due = [schedule_id for schedule_id, in_sec in rows[:limit] if in_sec is None or in_sec <= 0]
        rest = rows[len(due) :]
        if not rest:
            return DueSchedules(due, None)
        next_in_sec = rest[0][1]
        return DueSchedules(due, 0.0 if next_in_sec is None else max(next_in_sec, 0.0))

    async def fire(self, schedule_id: uuid.UUID) -> FireOutcome:
        """Fire one schedule if it is still due, in a transaction of its own."""
        async with self.sessions() as session, session.begin():
            return await fire_if_due_in_session(session, schedule_id, self.settings)

    async def record_error(self, schedule_id: uuid.UUID, message: str) -> None:
        """Keep why the schedule failed to fire in its last_error (cut to ERROR_LIMIT)."""
        async with self.sessions() as session, session.begin():
            await schedules.update_schedule(
                session, schedule_id, {"last_error": message[:ERROR_LIMIT]}
            )
