"""`python -m bench`: every scenario on one PostgreSQL server, a markdown table and a JSON file.

Starts a throw-away embedded PostgreSQL unless DATABASE_URL is set (it must allow CREATE
DATABASE). Progress goes to stderr, the table to stdout, worker and API output to log files.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.pipelines.registry import load_pipelines
from bench.config import ALL_SCENARIOS, BenchConfig
from bench.context import RunContext
from bench.enqueue import ENQUEUE_PATH
from bench.report import ScenarioResult, markdown, write_json
from bench.scenarios import all_scenarios
from bench.server import BenchServer, bench_server, create_template, drop_database, read_settings


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    """The run's configuration from the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--reps", type=int, help="repetitions per scenario (default 3, quick 1)")
    parser.add_argument("--only", help="comma-separated scenario numbers, e.g. 1,2,4")
    parser.add_argument("--out", type=Path, help="JSON output (bench-results/latest.json)")
    parser.add_argument("--workers", type=int, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, help="fleet-wide concurrency, 0 = none (default 0)"
    )
    parser.add_argument("--batch-size", type=int, help="pgq run --batch-size (default 10)")
    parser.add_argument("--jobs", type=int, help="N of scenarios 1 and 2 (default 20,000)")
    parser.add_argument("--api-workers", type=int, help="python -m app serve --workers (2)")
    parser.add_argument("--http-concurrency", type=int, help="trigger connections (32)")
    parser.add_argument("--http-requests", type=int, help="trigger requests (20,000)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the log folder")
    args = parser.parse_args(argv)
    config = BenchConfig.quick_sizes() if args.quick else BenchConfig()
    if args.reps is not None:
        if args.reps < 1 or (args.reps < 2 and not args.quick):
            parser.error("--reps must be at least 2 (1 is allowed with --quick only)")
        config.reps = args.reps
    if args.only:
        try:
            chosen = tuple(sorted({int(part) for part in args.only.split(",") if part.strip()}))
        except ValueError:
            parser.error("--only takes scenario numbers, e.g. 1,2,4")
        if not chosen or not set(chosen) <= set(ALL_SCENARIOS):
            parser.error(f"--only: scenarios are {', '.join(map(str, ALL_SCENARIOS))}")
        config.only = chosen
    overrides = {
        "out": args.out,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "jobs": args.jobs,
        "api_workers": args.api_workers,
        "http_concurrency": args.http_concurrency,
        "http_requests": args.http_requests,
    }
    for name, value in overrides.items():
        if value is not None:
            if isinstance(value, int) and value < (0 if name == "concurrency" else 1):
                parser.error(f"--{name.replace('_', '-')} must be at least 1")
            setattr(config, name, value)
    config.keep_logs = args.keep_logs
    return config


def run_settings(config: BenchConfig, server: BenchServer) -> dict[str, Any]:
    """What the whole run used, shown under the table."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "mode": "quick" if config.quick else "full",
        "repetitions": config.reps,
        "scenarios": ",".join(map(str, config.only)),
        "server": "embedded (throw-away)" if server.embedded else "DATABASE_URL",
        **{f"PostgreSQL {key}": value for key, value in server.settings.items()},
        "worker processes": config.workers,
        "fleet-wide concurrency": config.concurrency_label(),
        "batch size": config.batch_size,
        "in-app enqueue": ENQUEUE_PATH,
        "CPUs": os.cpu_count() or 0,
        "load average at start (1/5/15 min)": _load_average(),
        "Python": platform.python_version(),
    }


def _load_average() -> str:
    """The host's load averages: other work on the machine skews every figure."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


async def run_all(
    config: BenchConfig, server: BenchServer, log_dir: Path
) -> tuple[list[ScenarioResult], dict[str, Any]]:
    """Migrate the template once, run the chosen scenarios, collect their results."""
    server.settings = await read_settings(server)
    settings = run_settings(config, server)
    template = await create_template(server)
    ctx = RunContext(config, server, template, log_dir)
    scenarios = all_scenarios()
    try:
        for number in config.only:
            scenario = scenarios[number]
            result = ScenarioResult(number, scenario.title)
            ctx.progress(f"scenario {number}: {scenario.title}")
            started = time.monotonic()
            try:
                await scenario.run(ctx, result)
            except Exception as exc:  # report it and carry on with the next scenario
                result.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc(file=sys.stderr)
            result.duration_sec = time.monotonic() - started
            ctx.results[number] = result
            ctx.progress(f"scenario {number} done in {result.duration_sec:.1f}s")
    finally:
        await drop_database(server, template)
    return list(ctx.results.values()), settings


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when a scenario failed."""
    config = parse_args(argv)
    load_pipelines()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    print(f"[bench] subprocess logs in {log_dir}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-pg-") as pg_dir,
        bench_server(Path(pg_dir)) as server,
    ):
        results, settings = asyncio.run(run_all(config, server, log_dir))
    settings["run duration s"] = round(time.monotonic() - started, 1)
    settings["load average at end (1/5/15 min)"] = _load_average()
    failed = [r for r in results if r.error is not None]
    settings["subprocess logs"] = str(log_dir) if failed or config.keep_logs else "deleted"
    text = markdown(results, settings)
    print(text)
    write_json(config.out, results, settings, text)
    print(f"[bench] figures written to {config.out}", file=sys.stderr)
    if not failed and not config.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
