"""How many of a set of intervals ran at once, at most (for concurrency-limit checks)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def most_at_once(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals [start, end) open at one instant.

    An interval ending exactly when another starts does not overlap it: ends are counted
    before starts at the same instant.
    """
    spans = list(intervals)  # read twice below: a generator would be empty the second time
    edges = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most
