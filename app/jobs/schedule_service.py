"""ScheduleService: create, list, change, delete and run schedules, each in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import schedules
from app.db.models import DlSchedule
from app.domain.errors import InvalidJobError, ScheduleExistsError, ScheduleNotFoundError
from app.domain.filters import check_query_text
from app.domain.schedules import (
    Schedule,
    ScheduleCreate,
    ScheduleRun,
    ScheduleUpdate,
    job_spec_of,
    spec_from,
    template_fields,
)
from app.jobs.enqueue import enqueue_in_session
from app.jobs.validation import check_destinations, check_schedule
from app.settings import Settings


@dataclass
class ScheduleService:
    """The operations users perform on schedules."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings

    async def create(self, spec: ScheduleCreate) -> Schedule:
        """Store a new schedule; its first fire time is the next one after now (database clock).

        Raises InvalidScheduleError/InvalidJobError (bad cron, zone or template) and
        ScheduleExistsError (the name is taken).
        """
        rule = check_schedule(spec)
        await self._check_destinations(spec)
        async with self.sessions() as session, session.begin():
            now = await schedules.db_now(session)
            row = await schedules.insert_schedule(
                session,
                {
                    "name": spec.name,
                    "cron": rule.expression,
                    "timezone": spec.timezone,
                    "enabled": spec.enabled,
                    **template_fields(spec),
                    "next_run_at": rule.next_after(now) if spec.enabled else None,
                },
            )
            if row is None:
                raise ScheduleExistsError(f"a schedule named {spec.name!r} already exists")
            if spec.enabled:
                await schedules.announce_change(session, spec.name)
            return Schedule.from_row(row, now)

    async def list(self, *, after: str | None = None, limit: int = 100) -> list[Schedule]:
        """Schedules by name, `limit` at a time, starting after the name `after`."""
        check_query_text("after", after)
        async with self.sessions() as session:
            now = await schedules.db_now(session)
            rows = await schedules.list_schedules(session, after=after, limit=limit)
            return [Schedule.from_row(row, now) for row in rows]

    async def get(self, name: str) -> Schedule:
        """One schedule with its next fire times."""
        async with self.sessions() as session:
            now = await schedules.db_now(session)
            return Schedule.from_row(await self._row(session, name), now)

    async def update(self, name: str, changes: ScheduleUpdate) -> Schedule:
        """Change the given fields; a new cron, zone or enabling starts from the next fire time.

        The whole result is checked as on create, so an update cannot store a bad schedule.
        """
        async with self.sessions() as session, session.begin():
            row = await self._row(session, name, for_update=True)
            given = changes.changes()
            merged = msgspec.structs.replace(spec_from(row), **given)
            rule = check_schedule(merged)
            if {"task", "args"} & given.keys():
                await self._check_destinations(merged)
            values = {
                "cron": rule.expression,
                "timezone": merged.timezone,
                "enabled": merged.enabled,
                **template_fields(merged),
            }
            if (rule.expression, merged.timezone, merged.enabled) != (
                row.cron,
                row.timezone,
                row.enabled,
            ):
                now = await schedules.db_now(session)
                values["next_run_at"] = rule.next_after(now) if merged.enabled else None
                values["last_error"] = None
                # Only these move fire times; a new template is read when the job is made.
                await schedules.announce_change(session, name)
            await schedules.update_schedule(session, row.schedule_id, values)
            return await self._view(session, name)

    async def set_enabled(self, name: str, enabled: bool) -> Schedule:
        """Enable (from the next fire time after now) or disable a schedule."""
        return await self.update(name, ScheduleUpdate(enabled=enabled))

    async def delete(self, name: str) -> None:
        """Delete a schedule; the jobs it created stay."""
        async with self.sessions() as session, session.begin():
            if not await schedules.delete_schedule(session, name):
                raise ScheduleNotFoundError(f"schedule {name!r} not found")
            # The leader may be asleep until this schedule's fire time: it sleeps anew.
            await schedules.announce_change(session, name)

    async def run_now(self, name: str) -> ScheduleRun:
        """Create the schedule's job now, enabled or not; its fire times do not change.

        So the leader is not told: nothing it sleeps until has moved.
        """
        async with self.sessions() as session, session.begin():
            row = await self._row(session, name, for_update=True)
            result = await enqueue_in_session(
                session, job_spec_of(row), self.settings, internal=True
            )
            now = await schedules.db_now(session)
            await schedules.update_schedule(
                session, row.schedule_id, {"last_run_at": now, "last_job_id": result.job_id}
            )
            return ScheduleRun(job=result, schedule=await self._view(session, name))

    async def _check_destinations(self, spec: ScheduleCreate) -> None:
        """Refuse a job template whose args name a destination the settings do not allow."""
        try:
            await check_destinations([job_spec_of(spec)], self.settings)
        except InvalidJobError as error:
            raise type(error)("job template: " + error.message) from None

    async def _row(
        self, session: AsyncSession, name: str, *, for_update: bool = False
    ) -> DlSchedule:
        row = await schedules.get_schedule(session, name, for_update=for_update)
        if row is None:
            raise ScheduleNotFoundError(f"schedule {name!r} not found")
        return row

    async def _view(self, session: AsyncSession, name: str) -> Schedule:
        now = await schedules.db_now(session)
        return Schedule.from_row(await self._row(session, name), now)
