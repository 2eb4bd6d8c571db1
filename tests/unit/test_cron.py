"""Cron expressions: what parses, what each rejection says, and fire times across DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.domain.cron import parse_cron
from app.domain.errors import InvalidScheduleError


def test_cron_five_fields_fire_on_minutes() -> None:
    rule = parse_cron("*/15 * * * *", "UTC")
    start = datetime(2026, 1, 1, 10, 7, 30, tzinfo=UTC)
    assert rule.upcoming(start, 3) == [
        datetime(2026, 1, 1, 10, 15, tzinfo=UTC),
        datetime(2026, 1, 1, 10, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 10, 45, tzinfo=UTC),
    ]


def test_cron_six_fields_put_seconds_first() -> None:
    rule = parse_cron("*/10 * * * * *", "UTC")
    start = datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC)
    assert rule.upcoming(start, 2) == [
        datetime(2026, 1, 1, 10, 0, 10, tzinfo=UTC),
        datetime(2026, 1, 1, 10, 0, 20, tzinfo=UTC),
    ]


def test_cron_next_after_is_strictly_after() -> None:
    rule = parse_cron("0 * * * *", "UTC")
    on_the_hour = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert rule.next_after(on_the_hour) == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)


def test_cron_reads_the_expression_in_its_time_zone_across_dst() -> None:
    # 02:30 local every day; Berlin moves from UTC+1 to UTC+2 on 2026-03-29.
    rule = parse_cron("30 2 * * *", "Europe/Berlin")
    fires = rule.upcoming(datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    assert fires[0] == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    assert all(fire.tzinfo is UTC or fire.utcoffset() is not None for fire in fires)
    assert fires[-1] == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_cron_aliases_and_names_parse() -> None:
    assert parse_cron("@hourly", "UTC").expression == "@hourly"
    assert parse_cron("0 9 * * MON-FRI", "America/New_York").expression == "0 9 * * MON-FRI"


def test_cron_extra_spaces_are_normalised() -> None:
    assert parse_cron("  */5   *  * * * ", "UTC").expression == "*/5 * * * *"


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("* * *", "has 3 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "out of range"),
        ("a b c d e", "is invalid"),
        ("0 0 31 2 *", "never fires"),
        ("", "1 to 200 characters"),
        ("*" + " *" * 150, "1 to 200 characters"),
    ],
)
def test_cron_bad_expressions_say_what_is_wrong(expression: str, fragment: str) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        parse_cron(expression, "UTC")
    assert fragment in caught.value.message
    assert "field `cron`" in caught.value.message


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "UTC+3"])
def test_cron_unknown_time_zones_are_rejected(zone: str) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        parse_cron("* * * * *", zone)
    assert "unknown time zone" in caught.value.message
    assert "field `timezone`" in caught.value.message
