"""What a caller sends to create or change a schedule, and how a schedule is shown."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Protocol

import msgspec

from app.domain.cron import parse_cron
from app.domain.errors import InvalidScheduleError
from app.domain.idempotency import RESERVED_PREFIX
from app.domain.spec import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    NAME_PATTERN,
    JobCreate,
    Key,
    LeaseTtlSec,
    MaxAttempts,
    Priority,
    QueueName,
    TaskName,
)
from app.domain.views import JobCreated

# 150: the jobs it creates carry `dl:schedule:<name>` as their 200-character producer.
SCHEDULE_NAME_MAX = 150
ScheduleName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=SCHEDULE_NAME_MAX,
        pattern=NAME_PATTERN,
        examples=["nightly-rates"],
    ),
]
CronText = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        description="5 fields (minute hour day month weekday), or 6 with seconds first",
        examples=["*/5 * * * *", "0 3 * * MON-FRI", "*/10 * * * * *"],
    ),
]
ZoneName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, examples=["UTC", "Europe/Berlin"])
]
UPCOMING_COUNT = 5


class ScheduleRow(Protocol):
    """What a stored schedule (a dl_schedules row) carries that its view and jobs need."""

    name: str
    cron: str
    timezone: str
    enabled: bool
    queue: str
    task: str
    args: dict[str, Any]
    lock_key: str
    priority: int
    max_attempts: int
    lease_ttl_sec: int | None
    next_run_at: datetime | None


class ScheduleCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A schedule to create: when it fires, and the job it creates each time."""

    name: ScheduleName
    cron: CronText
    timezone: ZoneName = "UTC"
    enabled: bool = True
    queue: QueueName
    task: TaskName
    lock_key: Key
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    priority: Priority = DEFAULT_PRIORITY
    max_attempts: MaxAttempts = DEFAULT_MAX_ATTEMPTS
    lease_ttl_sec: LeaseTtlSec | None = None


class ScheduleUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; fields left out keep their value (the name cannot change)."""

    cron: CronText | msgspec.UnsetType = msgspec.UNSET
    timezone: ZoneName | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    queue: QueueName | msgspec.UnsetType = msgspec.UNSET
    task: TaskName | msgspec.UnsetType = msgspec.UNSET
    lock_key: Key | msgspec.UnsetType = msgspec.UNSET
    args: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    max_attempts: MaxAttempts | msgspec.UnsetType = msgspec.UNSET
    lease_ttl_sec: LeaseTtlSec | msgspec.UnsetType | None = msgspec.UNSET

    def changes(self) -> dict[str, Any]:
        """The fields that were given."""
        return {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if getattr(self, name) is not msgspec.UNSET
        }


class Schedule(msgspec.Struct, kw_only=True):
    """A schedule as stored, with its next fire times when enabled."""

    schedule_id: uuid.UUID
    name: str
    cron: str
    timezone: str
    enabled: bool
    queue: str
    task: str
    args: dict[str, Any]
    lock_key: str
    priority: int
    max_attempts: int
    lease_ttl_sec: int | None
    source: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: uuid.UUID | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    upcoming: list[datetime] = msgspec.field(default_factory=list)

    @classmethod
    def from_row(cls, row: ScheduleRow, now: datetime | None = None) -> Schedule:
        """Copy the row; with `now`, list the next fire times of an enabled, valid schedule."""
        fields = {name: getattr(row, name) for name in cls.__struct_fields__ if name != "upcoming"}
        view = cls(**fields)
        if now is None or not row.enabled:
            return view
        try:
            rule = parse_cron(row.cron, row.timezone)
        except InvalidScheduleError:
            return view  # written straight to the table; the leader records why in last_error
        if row.next_run_at is None:
            view.upcoming = rule.upcoming(now, UPCOMING_COUNT)
        else:
            view.upcoming = [row.next_run_at, *rule.upcoming(row.next_run_at, UPCOMING_COUNT - 1)]
        return view


class ScheduleRun(msgspec.Struct, kw_only=True):
    """The job a "run now" created, and the schedule afterwards."""

    job: JobCreated
    schedule: Schedule


def spec_from(source: object) -> ScheduleCreate:
    """A ScheduleCreate from any object carrying its fields: a stored row, a code declaration."""
    values = {
        name: getattr(source, name)
        for name in ScheduleCreate.__struct_fields__
        if hasattr(source, name)
    }
    values["args"] = dict(values["args"])
    return ScheduleCreate(**values)


def template_fields(spec: ScheduleCreate) -> dict[str, Any]:
    """The job template's columns of a schedule."""
    return {
        "queue": spec.queue,
        "task": spec.task,
        "args": spec.args,
        "lock_key": spec.lock_key,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "lease_ttl_sec": spec.lease_ttl_sec,
    }


def job_spec_of(
    row: ScheduleRow | ScheduleCreate, *, idempotency_key: str | None = None
) -> JobCreate:
    """The job a schedule creates; `producer` names the schedule, for filtering.

    In the service's reserved namespace: no client's job can claim to be a schedule's.
    """
    return JobCreate(
        queue=row.queue,
        task=row.task,
        args=dict(row.args),
        lock_key=row.lock_key,
        priority=row.priority,
        max_attempts=row.max_attempts,
        lease_ttl_sec=row.lease_ttl_sec,
        idempotency_key=idempotency_key,
        producer=f"{RESERVED_PREFIX}schedule:{row.name}",
    )
