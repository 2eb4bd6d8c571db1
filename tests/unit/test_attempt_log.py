"""The worker's end-of-attempt line: a failure names its error and its next retry time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from worker.attempt_log import (
    LOG_ERROR_LIMIT,
    AttemptEnd,
    attempt_end_fields,
    attempt_end_message,
)

JOB = uuid.UUID("0c57be18-0000-4000-8000-000000000001")
AT = datetime(2026, 12, 2, 10, 0, 5, tzinfo=UTC)


def test_attempt_end_message_success_is_the_plain_line() -> None:
    end = AttemptEnd(outcome="succeeded", job_id=JOB, attempt=1, max_attempts=5)

    assert attempt_end_message(end) == f"attempt ended: succeeded: job {JOB} attempt 1"
    assert attempt_end_fields(end) == {}


def test_attempt_end_message_failure_with_retry_names_error_and_retry_time() -> None:
    end = AttemptEnd(
        outcome="failed",
        job_id=JOB,
        attempt=1,
        max_attempts=3,
        error="ValueError: boom",
        retry_at=AT,
    )

    assert attempt_end_message(end) == (
        f"attempt ended: failed: job {JOB} attempt 1/3: ValueError: boom;"
        " retry at 2026-12-02T10:00:05+00:00"
    )
    assert attempt_end_fields(end) == {
        "error": "ValueError: boom",
        "retry_at": "2026-12-02T10:00:05+00:00",
    }


def test_attempt_end_message_last_failure_says_no_retry_left() -> None:
    end = AttemptEnd(
        outcome="failed", job_id=JOB, attempt=3, max_attempts=3, error="ValueError: boom"
    )

    assert attempt_end_message(end).endswith("attempt 3/3: ValueError: boom; no retry left")


def test_attempt_end_message_long_error_is_one_cut_line() -> None:
    error = "RuntimeError: " + "line\n" * 1000
    end = AttemptEnd(outcome="failed", job_id=JOB, attempt=1, max_attempts=1, error=error)

    logged = attempt_end_fields(end)["error"]

    assert "\n" not in attempt_end_message(end)
    assert len(logged) == LOG_ERROR_LIMIT
    assert logged.startswith("RuntimeError: line line")
