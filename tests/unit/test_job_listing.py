"""JobFilter.from_query and PageCursor: query text to filters, and the opaque page cursor."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.domain.errors import InvalidJobError
from app.domain.filters import JobFilter, PageCursor
from app.domain.states import JobStatus


def test_job_cursor_round_trips_microseconds_and_zone() -> None:
    cursor = PageCursor(
        datetime(2026, 11, 24, 18, 0, 0, 123456, tzinfo=timezone(timedelta(hours=3))),
        uuid.uuid4(),
    )

    decoded = PageCursor.decode(cursor.encode())

    assert decoded == cursor
    assert decoded.created_at.utcoffset() == timedelta(0)
    assert "=" not in cursor.encode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "!!!!",
        "abc",
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00").decode(),
        base64.urlsafe_b64encode(b"yesterday|" + str(uuid.uuid4()).encode()).decode(),
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00|" + str(uuid.uuid4()).encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
        base64.urlsafe_b64encode(
            b"0001-01-01T00:00:00+01:00|" + str(uuid.uuid4()).encode()
        ).decode(),
    ],
    ids=["empty", "symbols", "short", "no-id", "bad-time", "no-zone", "not-utf8", "overflow"],
)
def test_job_cursor_decode_rejects_anything_else(text: str) -> None:
    with pytest.raises(InvalidJobError, match="cursor"):
        PageCursor.decode(text)


def test_job_filter_statuses_are_deduplicated_and_case_insensitive() -> None:
    filters = JobFilter.from_query(status="Failed, lost,,failed ")

    assert filters.statuses == (JobStatus.FAILED, JobStatus.LOST)


def test_job_filter_unknown_status_names_it_and_the_valid_ones() -> None:
    with pytest.raises(InvalidJobError) as caught:
        JobFilter.from_query(status="failed,finished")

    assert "'finished'" in caught.value.message
    assert "`status`" in caught.value.message
    assert "queued, running, succeeded, failed, canceled, lost" in caught.value.message


def test_job_filter_timestamps_without_zone_are_utc() -> None:
    filters = JobFilter.from_query(
        created_after="2026-11-24T10:00:00",
        created_before="2026-11-24T12:00:00+02:00",
        finished_after="2026-11-24T10:00:00Z",
    )

    assert filters.created_after == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert filters.created_before == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert filters.finished_after == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert filters.finished_before is None


@pytest.mark.parametrize("name", ["created_after", "created_before", "finished_after"])
@pytest.mark.parametrize(
    "value", ["24.11.2026", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"]
)
def test_job_filter_bad_timestamp_names_the_parameter(name: str, value: str) -> None:
    with pytest.raises(InvalidJobError, match=f"`{name}`"):
        JobFilter.from_query(**{name: value})


def test_job_filter_empty_values_mean_no_filter() -> None:
    assert (
        JobFilter.from_query(status="", queue="", task="", lock_key="", created_after=" ")
        == JobFilter()
    )
