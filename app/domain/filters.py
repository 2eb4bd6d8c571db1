"""What a job listing asks for: its filters, parsed from query text, and its opaque cursor."""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.domain.errors import InvalidJobError
from app.domain.states import JobStatus

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 500
MAX_FILTER_TEXT = 1000
# An args filter is a small pattern, not a document: bounded so that one request cannot make
# PostgreSQL compare megabytes per row.
MAX_ARGS_FILTER_TEXT = 2000
# Fields a listing leaves out unless `include` names them: each may be large.
LIST_INCLUDABLE = frozenset({"result"})


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
    # Jobs whose args contain this JSON object (`args @> value`); None means no condition.
    args: dict[str, Any] | None = None

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
        args: str | None = None,
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
            args=parse_args_filter(args),
        )


def _refuse_constant(name: str) -> Any:
    """json.loads hook: NaN and Infinity are not JSON, and jsonb refuses them."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_number(text: str) -> float:
    """json.loads hook: 1e999 would become Infinity, which jsonb refuses."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:64]} is out of range")
    return value


def _holds_nul(value: Any) -> bool:
    """Whether a NUL character is in any key or string of a decoded JSON value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def parse_args_filter(raw: str | None) -> dict[str, Any] | None:
    """The `args` filter: a JSON object matched by containment; InvalidJobError otherwise.

    `{"account": 7}` lists jobs whose args hold the key `account` with the value 7 (and
    anything else). Checked here so that nothing PostgreSQL would refuse reaches it: a
    `\\u0000` in a string (jsonb cannot hold it), NaN or Infinity, a text past the bound.
    """
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_ARGS_FILTER_TEXT:
        raise InvalidJobError(
            f"longer than {MAX_ARGS_FILTER_TEXT} characters (query parameter `args`)"
        )
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_number)
    except (ValueError, RecursionError):
        raise InvalidJobError(
            'not valid JSON; pass a JSON object such as {"account": 7} (query parameter `args`)'
        ) from None
    if not isinstance(value, dict):
        raise InvalidJobError(
            'must be a JSON object such as {"account": 7} (query parameter `args`)'
        )
    if _holds_nul(value):
        raise InvalidJobError("NUL characters are not allowed (query parameter `args`)")
    return value


def parse_include(raw: str | None) -> frozenset[str]:
    """`result` -> {"result"}: the fields a listing adds on request (comma-separated; empty
    items skipped, unknown ones rejected naming the parameter)."""
    if raw is None:
        return frozenset()
    names: set[str] = set()
    for item in raw.split(","):
        name = item.strip().lower()
        if not name:
            continue
        if name not in LIST_INCLUDABLE:
            valid = ", ".join(sorted(LIST_INCLUDABLE))
            raise InvalidJobError(
                f"unknown field {item.strip()[:64]!r} (query parameter `include`; valid: {valid})"
            )
        names.add(name)
    return frozenset(names)


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
class PageCursor:
    """Where a page ended: a listing (of jobs, of workflows) goes on with the rows ordered
    after this one, newest first by (created_at, row_id).

    Sent to clients as base64url text of `<created_at ISO>|<row id>`; they treat it as opaque.
    """

    created_at: datetime
    row_id: uuid.UUID

    def encode(self) -> str:
        """The opaque text a client passes back as `cursor`."""
        raw = f"{self.created_at.astimezone(UTC).isoformat()}|{self.row_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> PageCursor:
        """Read a cursor made by `encode`; anything else is an InvalidJobError."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            created_text, id_text = raw.split("|")
            created_at = datetime.fromisoformat(created_text)
            row_id = uuid.UUID(id_text)
            if created_at.tzinfo is None:
                raise ValueError("a cursor's time carries its zone")
            return cls(created_at.astimezone(UTC), row_id)
        except (ValueError, OverflowError, binascii.Error):
            raise InvalidJobError(
                "invalid cursor (query parameter `cursor`): pass `next_cursor` of the "
                "previous page unchanged"
            ) from None
