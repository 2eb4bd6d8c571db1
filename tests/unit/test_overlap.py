"""The concurrency checker used by the group tests counts overlaps right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.overlap import most_at_once

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _span(start: int, end: int) -> tuple[datetime, datetime]:
    return T0 + timedelta(seconds=start), T0 + timedelta(seconds=end)


def test_most_at_once_counts_open_intervals_and_reads_a_generator_once() -> None:
    spans = [_span(0, 10), _span(1, 3), _span(2, 5), _span(4, 6), _span(10, 11)]
    assert most_at_once(iter(spans)) == 3  # at 2..3: the first three
    assert most_at_once([_span(0, 1), _span(1, 2)]) == 1  # touching is not overlapping
    assert most_at_once([]) == 0
