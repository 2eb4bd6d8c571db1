"""A bad DL_PIPELINE_MODULES stops the worker and the API at start with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.paths import PROJECT_ROOT
from tests.support.workers import WorkerFleet

BAD_MODULE = "no_such_package.pipelines"
EXPECTED = (
    f"DL_PIPELINE_MODULES names {BAD_MODULE!r}, which cannot be imported: "
    "ModuleNotFoundError: No module named 'no_such_package'"
)


async def test_pipeline_modules_bad_module_stops_the_worker_with_one_line(
    fleet: WorkerFleet,
) -> None:
    worker = fleet.start("bad-modules", env={"DL_PIPELINE_MODULES": BAD_MODULE})

    code = await worker.wait_exit(timeout=30)

    assert code != 0, worker.tail()
    assert worker.log().splitlines() == [f"dataloader worker: {EXPECTED}"]


def test_pipeline_modules_bad_module_stops_the_api_with_one_line(database_dsn: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_dsn,
        "APP_PORT": "1",  # never reached: the check comes before the bind
        "DL_PIPELINE_MODULES": BAD_MODULE,
    }

    done = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"dataloader: {EXPECTED}"]
    assert done.stdout == ""
