"""The CLI's pure helpers: Server-Sent Events parsing, --args/--arg merging, formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import typer

from app.client.http import sse_events
from app.client.jobs_commands import parse_args
from app.client.models import Job
from app.client.output import duration, progress_text, relative, sparkline
from app.client.render import retry_note


def test_sse_events_groups_lines_and_skips_comments() -> None:
    lines = [
        ": keep-alive",
        "",
        "event: job",
        'data: {"a":',
        "data: 1}",
        "id: 7",
        "",
        "data:no-space",
        "",
        "event: job",
        'data: {"cut": "off"',  # the stream ended inside this event
    ]

    assert list(sse_events(lines)) == [("job", '{"a":\n1}'), ("message", "no-space")]


def test_parse_args_merges_json_and_pairs() -> None:
    args = parse_args('{"a": 1, "b": "x"}', ["b=2", "c=true", "d=2025-01-10", "e=[1, 2]", "f="])

    assert args == {"a": 1, "b": 2, "c": True, "d": "2025-01-10", "e": [1, 2], "f": ""}


@pytest.mark.parametrize(
    ("args_json", "pairs"), [("[1]", []), ("{bad", []), (None, ["novalue"]), (None, ["=1"])]
)
def test_parse_args_rejects_bad_input(args_json: str | None, pairs: list[str]) -> None:
    with pytest.raises(typer.BadParameter):
        parse_args(args_json, pairs)


def test_formatting_helpers() -> None:
    now = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)

    assert duration(3.21) == "3.2 s"
    assert duration(252) == "4 min 12 s"
    assert duration(7500) == "2 h 5 min"
    assert relative(now - timedelta(minutes=3), now) == "3 min ago"
    assert relative(now + timedelta(seconds=30), now) == "in 30 s"
    assert progress_text({"processed": 3, "total": 10}) == "3/10 (30%)"
    assert progress_text({"processed": 3}) == "3"
    assert progress_text({"stage": "load"}) == '{"stage":"load"}'
    assert progress_text(None) == ""
    assert sparkline([0, 1, 8]) == " ▁█"
    assert sparkline([0, 0]) == "  "


def test_retry_note_names_next_retry_and_error_of_a_requeued_job() -> None:
    due = datetime.now(UTC) + timedelta(seconds=30)
    job = Job(
        job_id="j",
        status="queued",
        queue="q",
        task="t",
        lock_key="k",
        attempt=1,
        max_attempts=3,
        error="ValueError: boom\nsecond line",
        available_at=due,
    )

    note = retry_note(job)

    local = due.astimezone().strftime("%H:%M:%S")
    assert note is not None
    assert note.startswith(f"retry at {local} (in ")
    assert note.endswith(" s) after ValueError: boom second line")


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "running"},  # running again: the note is history
        {"attempt": 0},  # never started
        {"error": None},  # queued again by hand or after a shutdown, not after a failure
    ],
)
def test_retry_note_only_for_a_job_queued_after_a_failed_attempt(
    changes: dict[str, object],
) -> None:
    fields: dict[str, object] = {
        "job_id": "j",
        "status": "queued",
        "queue": "q",
        "task": "t",
        "lock_key": "k",
        "attempt": 1,
        "max_attempts": 3,
        "error": "ValueError: boom",
        "available_at": datetime.now(UTC),
        **changes,
    }

    assert retry_note(Job(**fields)) is None  # type: ignore[arg-type]
