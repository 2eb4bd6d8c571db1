"""Rate limits as people type and read them: COUNT/PERIOD, e.g. `20/1s`, `5/500ms`, `100/1m`."""

from __future__ import annotations

import math
import re

from rich.table import Table
from rich.text import Text

from app.client.models import QueueLimits, RateLimit
from app.client.output import fields_table

UNIT_SEC = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# COUNT "/" [NUMBER][UNIT]: `20/s` is 20 per second, `20/2` is 20 per 2 seconds.
SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?|\.\d+)?\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
SPEC_HINT = "COUNT/PERIOD, e.g. 20/1s, 5/500ms, 100/1m, 1000/1h (a bare period is seconds)"


class RateSpecError(ValueError):
    """Not a COUNT/PERIOD rate: the message says what was wrong."""


def parse_rate(text: str) -> RateLimit:
    """'20/1s' -> 20 starts per 1.0 s. The server checks the ranges (1..10000, 0.01..86400 s)."""
    match = SPEC.match(text)
    if match is None:
        raise RateSpecError(f"{text!r} is not {SPEC_HINT}")
    count_text, number_text, unit = match.groups()
    if number_text is None and unit is None:
        raise RateSpecError(f"{text!r} has no period: {SPEC_HINT}")
    count = int(count_text)
    period_sec = float(number_text or 1) * UNIT_SEC[(unit or "s").lower()]
    if count < 1:
        raise RateSpecError(f"{text!r}: the count must be at least 1")
    if period_sec <= 0:
        raise RateSpecError(f"{text!r}: the period must be longer than 0")
    return RateLimit(count=count, period_sec=period_sec)


def period_text(period_sec: float) -> str:
    """1.0 -> '1s', 0.5 -> '500ms', 60 -> '1m', 5400 -> '90m', 7200 -> '2h', 1.5 -> '1.5s'."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        amount = period_sec / size
        if amount >= 1 and math.isclose(amount, round(amount), abs_tol=1e-9):
            return f"{round(amount)}{unit}"
    if period_sec < 1:
        return f"{period_sec * 1000:g}ms"
    return f"{period_sec:g}s"


def rate_text(limit: RateLimit | None) -> str:
    """'20/1s', or '-' for no limit."""
    return "-" if limit is None else f"{limit.count}/{period_text(limit.period_sec)}"


def limits_text(limits: QueueLimits) -> str:
    """'20/1s · 5/1s per key', '20/1s', '5/1s per key', or '-' when the queue has none."""
    parts = []
    if limits.start is not None:
        parts.append(rate_text(limits.start))
    if limits.per_rate_key is not None:
        parts.append(f"{rate_text(limits.per_rate_key)} per key")
    return " · ".join(parts) if parts else "-"


def _described(limit: RateLimit | None, whose: str) -> str | Text:
    """'20/1s  (at most 20 starts per 1s, of the queue's jobs together)', or a dim 'none'."""
    if limit is None:
        return Text("none", style="dim")
    starts = "start" if limit.count == 1 else "starts"
    per = period_text(limit.period_sec)
    return f"{rate_text(limit)}  (at most {limit.count} {starts} per {per}, {whose})"


def limits_panel(queue: str, limits: QueueLimits) -> Table:
    """A queue's two rate limits, each in words."""
    return fields_table(
        [
            ("queue", queue),
            ("start", _described(limits.start, "of the queue's jobs together")),
            ("per rate_key", _described(limits.per_rate_key, "for each rate_key")),
        ]
    )
