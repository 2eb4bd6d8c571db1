"""The CLI's rate-limit texts: COUNT/PERIOD parsed and printed, a held-back job's line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.client.models import Job, QueueLimits, RateLimit
from app.client.rate_limits import RateSpecError, limits_text, parse_rate, rate_text
from app.client.render import concurrency_group, waiting_note


@pytest.mark.parametrize(
    ("spec", "count", "period_sec", "shown"),
    [
        ("20/1s", 20, 1.0, "20/1s"),
        ("5/500ms", 5, 0.5, "5/500ms"),
        ("100/1m", 100, 60.0, "100/1m"),
        ("1000/2h", 1000, 7200.0, "1000/2h"),
        ("20/s", 20, 1.0, "20/1s"),
        ("20/2", 20, 2.0, "20/2s"),  # a bare number is seconds
        ("3/1.5s", 3, 1.5, "3/1.5s"),
        ("10/90m", 10, 5400.0, "10/90m"),
    ],
)
def test_parse_rate_reads_units_and_rate_text_prints_them_back(
    spec: str, count: int, period_sec: float, shown: str
) -> None:
    limit = parse_rate(spec)

    assert (limit.count, limit.period_sec) == (count, period_sec)
    assert rate_text(limit) == shown


@pytest.mark.parametrize("spec", ["20", "20/", "x/1s", "0/1s", "20/0s", "20/1d", "-1/1s", ""])
def test_parse_rate_rejects_what_is_not_a_rate(spec: str) -> None:
    with pytest.raises(RateSpecError):
        parse_rate(spec)


def test_limits_text_names_each_limit_or_a_dash() -> None:
    both = QueueLimits(
        start=RateLimit(count=20, period_sec=1), per_rate_key=RateLimit(count=5, period_sec=1)
    )

    assert limits_text(both) == "20/1s · 5/1s per key"
    assert limits_text(QueueLimits(per_rate_key=RateLimit(count=5, period_sec=60))) == (
        "5/1m per key"
    )
    assert limits_text(QueueLimits()) == "-"


def _job(**fields: object) -> Job:
    values: dict[str, object] = {"job_id": "j", "status": "queued", "queue": "q"}
    values.update({"task": "noop", "lock_key": "k", **fields})
    return Job(**values)  # type: ignore[arg-type]


def test_waiting_note_says_what_a_queued_job_waits_for_and_until_when() -> None:
    until = datetime.now(UTC) + timedelta(minutes=5)
    local = until.astimezone().strftime("%H:%M:%S")

    note = waiting_note(_job(waiting_for="rate_limit", available_at=until))

    assert note is not None
    assert note.startswith(f"waiting for rate limit until {local} (in ")
    assert waiting_note(_job(waiting_for="queue_paused", available_at=until)) == (
        "waiting for queue resume"
    )
    assert waiting_note(_job(waiting_for=None, available_at=until)) is None
    assert waiting_note(_job(status="running", waiting_for="rate_limit")) is None


def test_concurrency_group_shows_key_and_limit() -> None:
    assert concurrency_group(_job(concurrency_key="partner", concurrency_limit=3)) == (
        "partner (at most 3 at once)"
    )
    assert concurrency_group(_job()) is None
