"""`dataloader trigger --wait` and `status` show what the pipeline returned."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.support.api_servers import E2E_PIPELINES_API_ENV
from tests.support.cli_runner import WORKER_QUEUE, Cli

pytestmark = pytest.mark.usefixtures("worker")

API_ENV = E2E_PIPELINES_API_ENV  # the API accepts the e2e pipelines (e2e/conftest.py)
VALUE = {"rows": 42, "file": "rates.csv"}
SHAPES = ["test.result.coroutine", "test.result.function", "test.result.generator"]


def trigger_args(task: str) -> list[str]:
    lock_key = f"cli-result:{uuid.uuid4().hex[:12]}"
    args = json.dumps({"value": VALUE, "sleep": 0.2})
    return ["trigger", WORKER_QUEUE, task, "--lock-key", lock_key, "--args", args, "--wait"]


@pytest.mark.parametrize("task", SHAPES)
async def test_trigger_wait_prints_the_result(cli: Cli, task: str) -> None:
    result = await cli(*trigger_args(task))

    assert result.returncode == 0, str(result)
    done = re.search(r"job (\S+) succeeded in [\d.]+ s \(attempt 1/5\)\n", result.stdout)
    assert done, str(result)
    last = result.stdout.splitlines()[-1]
    assert last.startswith("result "), str(result)
    assert json.loads(last.removeprefix("result ")) == VALUE  # jsonb keeps its own key order

    shown = await cli.ok("status", done.group(1))
    line = re.search(r"^\s*result\s+(\{.*\})\s*$", shown.stdout, re.M)
    assert line, str(shown)
    assert json.loads(line.group(1)) == VALUE


@pytest.mark.parametrize("task", SHAPES)
async def test_trigger_wait_json_has_the_result(cli: Cli, task: str) -> None:
    result = await cli(*trigger_args(task), "--json")

    assert result.returncode == 0, str(result)
    job = result.json()
    assert (job["status"], job["result"]) == ("succeeded", VALUE)


async def test_trigger_wait_prints_no_result_line_without_one(cli: Cli) -> None:
    lock_key = f"cli-result:{uuid.uuid4().hex[:12]}"
    result = await cli("trigger", WORKER_QUEUE, "noop", "--lock-key", lock_key, "--wait")

    assert result.returncode == 0, str(result)
    assert "result" not in result.stdout, str(result)
