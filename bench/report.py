"""The results: a markdown table for people and a JSON file for machines."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import Spread

DASH = "\u2013"  # en dash between the ends of a range
NONE = "\u2013"  # shown where there is no value
SPREAD = f"spread (min{DASH}max)"

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Target:
    """What the median should reach, e.g. `>= 0.60`."""

    op: str
    threshold: float

    def met(self, value: float) -> bool:
        """Whether `value` reaches the target."""
        return _OPS[self.op](value, self.threshold)

    def text(self, unit: str) -> str:
        """The target as shown in the table."""
        return f"{self.op} {fmt(self.threshold)} {unit}".strip()


@dataclass
class Figure:
    """One measured quantity of a scenario over its repetitions (or why it is missing)."""

    metric: str
    unit: str
    spread: Spread | None
    target: Target | None = None
    note: str | None = None

    @property
    def met(self) -> bool | None:
        """Whether the median reaches the target; None without a target or a value."""
        if self.target is None or self.spread is None:
            return None
        return self.target.met(self.spread.median)

    def as_json(self) -> dict[str, Any]:
        """The figure as plain JSON values."""
        spread = self.spread
        return {
            "metric": self.metric,
            "unit": self.unit,
            "median": spread.median if spread else None,
            "min": spread.low if spread else None,
            "max": spread.high if spread else None,
            "values": list(spread.values) if spread else [],
            "target": self.target.text(self.unit) if self.target else None,
            "met": self.met,
            "note": self.note,
        }


@dataclass
class ScenarioResult:
    """Everything one scenario measured, and the settings it ran with."""

    number: int
    title: str
    settings: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    error: str | None = None
    duration_sec: float = 0.0

    def add(
        self,
        metric: str,
        unit: str,
        values: list[float] | Spread,
        target: Target | None = None,
        note: str | None = None,
    ) -> Figure | None:
        """Record a figure from its per-repetition values; nothing when there are none."""
        if not isinstance(values, Spread) and not values:
            return None  # the scenario failed before its first repetition finished
        spread = values if isinstance(values, Spread) else Spread.of(values)
        figure = Figure(metric, unit, spread, target, note)
        self.figures.append(figure)
        return figure

    def unavailable(
        self, metric: str, unit: str, reason: str, target: Target | None = None
    ) -> None:
        """Record a figure that could not be measured, and why."""
        self.figures.append(Figure(metric, unit, None, target, f"unavailable: {reason}"))

    def figure(self, metric: str) -> Figure | None:
        """The figure named `metric`, if recorded."""
        return next((f for f in self.figures if f.metric == metric), None)

    def as_json(self) -> dict[str, Any]:
        """The scenario as plain JSON values."""
        return {
            "number": self.number,
            "title": self.title,
            "settings": self.settings,
            "figures": [f.as_json() for f in self.figures],
            "error": self.error,
            "duration_sec": round(self.duration_sec, 2),
        }


def fmt(value: float) -> str:
    """A number with as many decimals as its size deserves."""
    size = abs(value)
    if size >= 100 or value == int(value):
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:,.1f}"
    if size >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"


def markdown(results: list[ScenarioResult], run_settings: dict[str, Any]) -> str:
    """One table row per figure, then the settings of the run and of each scenario."""
    lines = [
        _row(["scenario", "metric", "median", SPREAD, "unit", "target", "met/short"]),
        _row(["---"] * 7),
    ]
    for result in results:
        name = f"{result.number}. {result.title}"
        if result.error is not None:
            lines.append(_row([name, "error", NONE, NONE, "", "", result.error.splitlines()[0]]))
        for figure in result.figures:
            spread = figure.spread
            median = fmt(spread.median) if spread else NONE
            span = f"{fmt(spread.low)} {DASH} {fmt(spread.high)}" if spread else NONE
            target = figure.target.text(figure.unit) if figure.target else ""
            verdict = {True: "met", False: "short", None: ""}[figure.met] if spread else "n/a"
            lines.append(_row([name, figure.metric, median, span, figure.unit, target, verdict]))
    lines += ["", "Settings:", ""]
    lines += [f"- {key}: {_value(value)}" for key, value in run_settings.items()]
    for result in results:
        settings = ", ".join(f"{k}={_value(v)}" for k, v in result.settings.items())
        lines.append(f"- scenario {result.number} ({result.title}): {settings}")
        if result.error is not None:
            lines.append(f"  - failed: {result.error.splitlines()[0]}")
    notes = [
        f"- scenario {r.number}, {f.metric}: {f.note}" for r in results for f in r.figures if f.note
    ]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return fmt(value)
    return str(value)


def write_json(
    path: Path, results: list[ScenarioResult], run_settings: dict[str, Any], markdown_text: str
) -> None:
    """Write every figure and setting to `path` (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "settings": run_settings,
        "scenarios": {str(r.number): r.as_json() for r in results},
        "markdown": markdown_text,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
