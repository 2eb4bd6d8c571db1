"""`python -m bench.retention` on a small history: it runs and reports numbers, nothing more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings
from tests.support.databases import TestServer as PgServer

RUN_TIMEOUT_SEC = 120
JOBS = 3000


@pytest.mark.timeout(RUN_TIMEOUT_SEC + 20)
def test_retention_bench_drains_a_small_history_and_reports_batches(
    pg_server: PgServer, project_root: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env["DATABASE_URL"] = pg_server.admin_dsn  # the maintenance database: CREATE DATABASE
    done = subprocess.run(
        [sys.executable, "-m", "bench.retention", "--jobs", str(JOBS), "--batch-size", "500"],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SEC,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-6000:]}"

    report = json.loads(done.stdout)
    by_kind, by_pass = report["by_kind"], report["by_pass"]
    assert by_kind["before"] == {
        "dl_jobs": JOBS,
        "dl_job_events": 3 * JOBS,
        "pgqueuer_log": 3 * JOBS,
        "pgqueuer_statistics": JOBS,
    }
    empty = dict.fromkeys(by_kind["before"], 0)
    assert by_kind["after"] == empty
    assert by_pass["after"] == empty
    jobs = by_kind["per_batch"]["jobs (with their events)"]
    assert jobs["batches"] == JOBS // 500 + 1  # the last one finds nothing
    assert 0 < jobs["p50_ms"] <= jobs["max_ms"]
    assert by_pass["passes"] >= 1
    assert by_pass["longest_batch_ms"] > 0
