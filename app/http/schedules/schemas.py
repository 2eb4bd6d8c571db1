"""The bodies of /api/v1/schedules: the domain's schedule types, and the page HTTP adds."""

from __future__ import annotations

import msgspec

from app.domain.schedules import Schedule, ScheduleCreate, ScheduleRun, ScheduleUpdate

__all__ = ["Schedule", "ScheduleCreate", "SchedulePage", "ScheduleRun", "ScheduleUpdate"]


class SchedulePage(msgspec.Struct, kw_only=True):
    """One page of schedules by name; pass `next_after` as `after` for the next page."""

    schedules: list[Schedule]
    next_after: str | None
