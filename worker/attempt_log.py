"""The one log line an attempt leaves at its end: how it ended and, for a failure, why."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

# The job row keeps the full error; a log line keeps enough to tell one failure from another.
LOG_ERROR_LIMIT = 500


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, as the runner saw it; `retry_at` is set when it will run again."""

    outcome: str
    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    error: str | None = None
    retry_at: datetime | None = None


def short_error(error: str) -> str:
    """The error on one line, cut at LOG_ERROR_LIMIT characters."""
    flat = " ".join(error.split())
    return flat if len(flat) <= LOG_ERROR_LIMIT else flat[: LOG_ERROR_LIMIT - 1] + "…"


def attempt_end_message(end: AttemptEnd) -> str:
    """'attempt ended: failed: job J attempt 1/3: ValueError: boom; retry at 2026-…Z'."""
    text = f"attempt ended: {end.outcome}: job {end.job_id} attempt {end.attempt}"
    if end.error is None:
        return text
    text += f"/{end.max_attempts}: {short_error(end.error)}"
    if end.retry_at is not None:
        return f"{text}; retry at {end.retry_at.isoformat(timespec='seconds')}"
    return f"{text}; no retry left" if end.attempt >= end.max_attempts else f"{text}; no retry"


def attempt_end_fields(end: AttemptEnd) -> dict[str, str]:
    """The same facts as separate fields, for JSON logs (`error`, `retry_at`)."""
    fields: dict[str, str] = {}
    if end.error is not None:
        fields["error"] = short_error(end.error)
    if end.retry_at is not None:
        fields["retry_at"] = end.retry_at.isoformat(timespec="seconds")
    return fields
