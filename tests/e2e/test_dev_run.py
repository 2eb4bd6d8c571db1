"""`python -m app run` (what `make run` calls): embedded PostgreSQL, API, worker, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from app.devserver.embedded_postgres import free_port
from tests.support.waiting import wait_until


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_dev_run_serves_runs_a_job_and_stops_cleanly(
    tmp_path: Path, project_root: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "PG_HOST", "WORKERS_JSON"}
    }
    env.update(
        APP_PORT=str(port),
        DL_EMBEDDED_PG_DIR=str(tmp_path / "pg"),
        DL_EMBEDDED_PG_PORT=str(free_port()),
        DL_HEARTBEAT_SEC="0.5",
    )
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "run"],
        cwd=project_root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    children: list[psutil.Process] = []
    try:
        await wait_until(lambda: _healthy(base), timeout=60, interval=0.1, what="the API")
        children = _descendants(process.pid)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        assert "postgres" in names
        assert "pgqueuer" in names
        assert "app serve" in names

        created = httpx.post(
            f"{base}/api/v1/jobs/trigger",
            json={
                "queue": "etl.default",
                "task": "noop",
                "args": {"steps": 2, "sleep": 0.2},
                "lock_key": "dev-run",
            },
        ).json()
        assert created["status"] == "queued"

        def finished() -> dict[str, object] | None:
            job = httpx.get(f"{base}/api/v1/jobs/{created['job_id']}/status").json()
            return job if job["status"] == "succeeded" else None

        job = await wait_until(finished, timeout=30, interval=0.1, what="the job to succeed")
        assert job["progress"] == {"processed": 2, "total": 2}
    finally:
        process.send_signal(stop_signal)
        code = process.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
    await wait_until(
        lambda: not any(child.is_running() for child in children),
        timeout=10,
        interval=0.1,
        what="children to exit",
    )
    assert (tmp_path / "pg" / "PG_VERSION").exists()  # data kept for the next start
