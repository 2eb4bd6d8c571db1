"""`python -m bench --quick` end to end on the test session's PostgreSQL server.

Only that it runs every scenario and reports numbers; never how fast anything was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings
from bench.config import ALL_SCENARIOS
from tests.support.databases import TestServer as PgServer

# Every scenario the bench has: the smoke run covers each one.
SCENARIOS = {str(number) for number in ALL_SCENARIOS}
RUN_TIMEOUT_SEC = 280


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.timeout(RUN_TIMEOUT_SEC + 20)
def test_quick_bench_reports_every_scenario(
    pg_server: PgServer, project_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b.json"
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env["DATABASE_URL"] = pg_server.admin_dsn  # the maintenance database: CREATE DATABASE
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SEC,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-6000:]}"

    document = json.loads(out.read_text())
    scenarios = document["scenarios"]
    assert set(scenarios) == SCENARIOS
    for number, scenario in scenarios.items():
        assert scenario["error"] is None, (number, scenario["error"])
        figures = scenario["figures"]
        assert any(_is_number(f["median"]) for f in figures), (number, figures)
        for figure in figures:
            if figure["median"] is None:  # only a figure the service cannot offer yet
                assert figure["note"].startswith("unavailable"), (number, figure)
                continue
            for key in ("median", "min", "max"):
                assert _is_number(figure[key]), (number, figure)
            assert figure["values"], (number, figure)
            assert all(_is_number(v) for v in figure["values"]), (number, figure)
            assert figure["min"] <= figure["median"] <= figure["max"]
        assert scenario["settings"], number
    for key in ("PostgreSQL fsync", "PostgreSQL synchronous_commit", "batch size"):
        assert key in document["settings"]

    table = done.stdout
    assert "| scenario | metric | median |" in table
    for number, scenario in scenarios.items():
        assert f"| {number}. {scenario['title']} |" in table
    assert "Settings:" in table
