"""The scenarios, by number: each module has NUMBER, TITLE and `async run(ctx, result)`."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.context import RunContext
from bench.report import ScenarioResult


@dataclass(frozen=True)
class Scenario:
    """One scenario's number, title and entry point."""

    number: int
    title: str
    run: Callable[[RunContext, ScenarioResult], Awaitable[None]]


MODULES = (
    "s1_peer",
    "s2_lifecycle",
    "s3_enqueue",
    "s4_latency",
    "s5_scale",
    "s6_memory",
    "s7_herd",
    "s8_rate_limits",
    "s9_fairness",
    "s10_workflows",
)


def all_scenarios() -> dict[int, Scenario]:
    """Every scenario by number (imported here: a scenario's imports are heavy)."""
    modules = [importlib.import_module(f"bench.scenarios.{name}") for name in MODULES]
    return {m.NUMBER: Scenario(m.NUMBER, m.TITLE, m.run) for m in modules}
