"""Schedules declared in code (registry.declare_schedule) written into dl_schedules at start."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import schedules
from app.domain.errors import InvalidJobError
from app.domain.schedules import spec_from, template_fields
from app.jobs.validation import check_schedule
from app.pipelines.registry import DeclaredSchedule

logger = logging.getLogger("app.schedules")


@dataclass(frozen=True)
class SyncResult:
    """Names by what the sync did with them."""

    by_outcome: dict[str, list[str]] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)


async def sync_declared_schedules(
    sessions: async_sessionmaker[AsyncSession], declared: Sequence[DeclaredSchedule]
) -> SyncResult:
    """Upsert each declared schedule in one transaction; an invalid one is logged and skipped.

    Many workers starting at once may run this together: the upsert makes them agree.
    """
    by_outcome: dict[str, list[str]] = {}
    invalid: dict[str, str] = {}
    rows: list[dict[str, object]] = []
    for item in declared:
        spec = spec_from(item)
        try:
            rule = check_schedule(spec)
        except InvalidJobError as error:
            invalid[item.name] = error.message
            logger.error("schedule %s declared in code is invalid: %s", item.name, error.message)
            continue
        rows.append(
            {
                "name": spec.name,
                "cron": rule.expression,  # normal form, as create() stores it
                "timezone": spec.timezone,
                **template_fields(spec),
            }
        )
    async with sessions() as session, session.begin():
        for row in rows:
            outcome = await schedules.upsert_code_schedule(session, row)
            by_outcome.setdefault(outcome, []).append(str(row["name"]))
            if outcome in ("created", "updated"):
                # A new row, or a new cron or zone (one kind of update), waits for the
                # leader to set its first fire time.
                await schedules.announce_change(session, str(row["name"]))
    taken = by_outcome.get("taken", [])
    if taken:
        logger.warning("schedules declared in code but made over HTTP, left alone: %s", taken)
    return SyncResult(by_outcome=by_outcome, invalid=invalid)
