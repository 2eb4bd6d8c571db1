"""What every scenario gets: the sizes, the server, the template, a log folder, the results."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import BenchConfig
from bench.processes import Processes
from bench.report import ScenarioResult
from bench.server import BenchServer, fresh_database


@dataclass
class RunContext:
    """Shared by the scenarios of one run."""

    config: BenchConfig
    server: BenchServer
    template: str
    log_dir: Path
    results: dict[int, ScenarioResult] = field(default_factory=dict)

    def processes(self, scenario: int, rep: int | str) -> Processes:
        """A process group whose logs go to `<log_dir>/s<scenario>-<rep>/`."""
        return Processes(self.log_dir / f"s{scenario}-{rep}")

    @asynccontextmanager
    async def database(self, scenario: int) -> AsyncIterator[str]:
        """A fresh copy of the migrated template for one repetition (dropped afterwards)."""
        async with fresh_database(self.server, self.template, f"bench_s{scenario}") as dsn:
            yield dsn

    def progress(self, message: str) -> None:
        """A progress line on stderr (stdout carries the table)."""
        print(f"[bench] {message}", file=sys.stderr, flush=True)
