"""Median, spread and percentiles of a handful of repetitions or many latencies."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """The median of some values and their range."""

    median: float
    low: float
    high: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Summarise at least one value."""
        if not values:
            raise ValueError("no values to summarise")
        return cls(
            median=statistics.median(values),
            low=min(values),
            high=max(values),
            values=tuple(values),
        )


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values for a percentile")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    below = math.floor(rank)
    above = math.ceil(rank)
    if below == above:
        return ordered[below]
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def ratio(numerator: Spread, denominator: Spread) -> Spread:
    """The ratio of two medians, spread from the least to the most favourable pairing."""
    if denominator.median <= 0 or denominator.low <= 0:
        raise ValueError("a ratio needs a positive denominator")
    median = numerator.median / denominator.median
    return Spread(
        median=median,
        low=numerator.low / denominator.high,
        high=numerator.high / denominator.low,
        values=(median,),
    )
