"""What a job listing asks for: its filters, parsed from query text, and its opaque cursor."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from app.domain.errors import InvalidJobError
from app.domain.states import JobStatus

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 500
MAX_FILTER_TEXT = 1000


@dataclass(frozen=True)
class JobFilter:
    """Conditions every listed job meets; None (or no statuses) means no condition.

    Ranges are half-open: `created_after` <= created_at < `created_before`, and likewise
    for finished_at (a job that has not finished never matches a finished range).
    """

    statuses: tuple[JobStatus, ...] = ()
    queue: str | None = None
    task: str | None = None
    lock_key: str | None = None
    partition_key: str | None = None
    producer: str | None = None
    consumer_group: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None

    @classmethod
    def from_query(
        cls,
        *,
        status: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        lock_key: str | None = None,
        partition_key: str | None = None,
        producer: str | None = None,
        consumer_group: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        finished_after: str | None = None,
        finished_before: str | None = None,
    ) -> JobFilter:
        """Parse query-string values; an InvalidJobError names the parameter that is wrong.

        An empty value means no filter (what an HTML form sends for a field left blank).
        """
        texts = {
            "queue": queue,
            "task": task,
            "lock_key": lock_key,
            "partition_key": partition_key,
            "producer": producer,
            "consumer_group": consumer_group,
        }
        for name, value in texts.items():
            check_query_text(name, value)
            if value == "":
                texts[name] = None
        return cls(
            statuses=parse_statuses(status),
            **texts,
            created_after=parse_timestamp("created_after", created_after),
            created_before=parse_timestamp("created_before", created_before),
            finished_after=parse_timestamp("finished_after", finished_after),
            finished_before=parse_timestamp("finished_before", finished_before),
        )


def parse_statuses(raw: str | None) -> tuple[JobStatus, ...]:
    """`failed,lost` -> (FAILED, LOST); empty items are skipped, unknown ones rejected."""
    if raw is None:
        return ()
    statuses: list[JobStatus] = []
    for item in raw.split(","):
        name = item.strip().lower()
        if not name:
            continue
        try:
            status = JobStatus(name)
        except ValueError:
            valid = ", ".join(s.value for s in JobStatus)
            raise InvalidJobError(
                f"unknown status {item.strip()[:64]!r} (query parameter `status`; valid: {valid})"
            ) from None
        if status not in statuses:
            statuses.append(status)
    return tuple(statuses)


def parse_timestamp(name: str, raw: str | None) -> datetime | None:
    """An RFC 3339 timestamp; one without a zone is read as UTC."""
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidJobError(
            f"{raw[:64]!r} is not an RFC 3339 timestamp, e.g. 2026-11-24T15:00:00Z "
            f"(query parameter `{name}`)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # the first or last day Python can hold, shifted past it
        raise InvalidJobError(f"{raw[:64]!r} is out of range (query parameter `{name}`)") from None


def check_query_text(name: str, value: str | None) -> None:
    """PostgreSQL text cannot hold NUL; an absurdly long filter is a client mistake.

    An InvalidJobError (a 400) names the query parameter.
    """
    if value is None:
        return
    if "\x00" in value:
        raise InvalidJobError(f"NUL characters are not allowed (query parameter `{name}`)")
    if len(value) > MAX_FILTER_TEXT:
        raise InvalidJobError(
            f"longer than {MAX_FILTER_TEXT} characters (query parameter `{name}`)"
        )


@dataclass(frozen=True)
class JobCursor:
    """Where a page ended: the listing goes on with jobs ordered after this one.

    Sent to clients as base64url text of `<created_at ISO>|<job_id>`; they treat it as opaque.
    """

    created_at: datetime
    job_id: uuid.UUID

    def encode(self) -> str:
        """The opaque text a client passes back as `cursor`."""
        raw = f"{self.created_at.astimezone(UTC).isoformat()}|{self.job_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> JobCursor:
        """Read a cursor made by `encode`; anything else is an InvalidJobError."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            created_text, job_text = raw.split("|")
            created_at = datetime.fromisoformat(created_text)
            job_id = uuid.UUID(job_text)
            if created_at.tzinfo is None:
                raise ValueError("a cursor's time carries its zone")
            return cls(created_at.astimezone(UTC), job_id)
        except (ValueError, OverflowError, binascii.Error):
            raise InvalidJobError(
                "invalid cursor (query parameter `cursor`): pass `next_cursor` of the "
                "previous page unchanged"
            ) from None
