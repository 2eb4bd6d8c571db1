"""`dataloader workflows` and `trigger --depends-on` against a real API (and worker)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli_runner import IDLE_QUEUE, WORKER_QUEUE, Cli
from tests.support.workers import WorkerFleet


def workflow_file(tmp_path: Path, queue: str, steps: list[tuple[str, list[str]]]) -> str:
    body: dict[str, Any] = {
        "name": "cli-diamond",
        "steps": [
            {
                "name": name,
                "job": {"queue": queue, "task": "noop", "lock_key": f"cli:{name}:{uuid.uuid4()}"},
                "depends_on": parents,
            }
            for name, parents in steps
        ],
    }
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(body))
    return str(path)


DIAMOND = [
    ("extract", []),
    ("left", ["extract"]),
    ("right", ["extract"]),
    ("load", ["left", "right"]),
]


async def test_workflows_create_wait_follows_it_to_the_end_and_shows_its_steps(
    cli: Cli, worker: WorkerFleet, tmp_path: Path
) -> None:
    created = await cli.ok(
        "workflows", "create", workflow_file(tmp_path, WORKER_QUEUE, DIAMOND), "--wait"
    )

    assert re.search(r"workflow (\S+) \(cli-diamond\) created: 4 steps", created.stdout), str(
        created
    )
    assert "succeeded (4 succeeded)" in created.stdout, str(created)
    assert re.search(r"load\s+succeeded\s+1/5\s+left, right\s", created.stdout), str(created)
    workflow_id = created.stdout.split()[1]
    shown = await cli.ok("workflows", "show", workflow_id, "--json")
    assert shown.json()["status"] == "succeeded"
    assert {step["name"] for step in shown.json()["steps"]} == {"extract", "left", "right", "load"}


async def test_workflows_cancel_ends_the_unfinished_steps(cli: Cli, tmp_path: Path) -> None:
    created = await cli.ok(
        "workflows", "create", workflow_file(tmp_path, IDLE_QUEUE, DIAMOND), "--json"
    )
    workflow_id = created.json()["workflow_id"]

    canceled = await cli.ok("workflows", "cancel", workflow_id)
    shown = await cli.ok("workflows", "show", workflow_id)

    assert f"workflow {workflow_id}: 4 steps canceled, 0 running steps asked to stop" in (
        canceled.stdout
    )
    assert "canceled (4 canceled)" in shown.stdout, str(shown)
    assert re.search(r"extract\s+canceled\s", shown.stdout), str(shown)


async def test_workflows_create_refuses_a_cycle_naming_it(cli: Cli, tmp_path: Path) -> None:
    cycle = [("a", ["b"]), ("b", ["a"])]

    result = await cli("workflows", "create", workflow_file(tmp_path, IDLE_QUEUE, cycle))

    assert result.returncode == 2, str(result)
    assert "cycle: b -> a -> b" in result.stderr, str(result)


async def test_workflows_create_again_with_its_key_finds_the_workflow(
    cli: Cli, tmp_path: Path
) -> None:
    path = workflow_file(tmp_path, IDLE_QUEUE, DIAMOND)
    key = f"cli-{uuid.uuid4()}"

    first = await cli.ok("workflows", "create", path, "--idempotency-key", key)
    again = await cli.ok("workflows", "create", path, "--idempotency-key", key)

    assert re.search(r"workflow (\S+) \(cli-diamond\) created: 4 steps", first.stdout), str(first)
    workflow_id = first.stdout.split()[1]
    assert (
        f"workflow {workflow_id} (cli-diamond) found (created before with this key): 4 steps"
        in again.stdout
    ), str(again)


async def test_workflows_create_with_a_taken_key_is_a_client_error_naming_it(
    cli: Cli, tmp_path: Path
) -> None:
    key = f"cli-{uuid.uuid4()}"
    await cli.ok(
        "workflows",
        "create",
        workflow_file(tmp_path, IDLE_QUEUE, DIAMOND),
        "--idempotency-key",
        key,
    )
    other = workflow_file(tmp_path, IDLE_QUEUE, [("only", [])])

    result = await cli("workflows", "create", other, "--idempotency-key", key)

    assert result.returncode == 2, str(result)
    assert f"idempotency_key '{key}' is already used by workflow" in result.stderr, str(result)


async def test_workflows_list_shows_each_with_its_status_and_steps(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "named.json"
    body = json.loads(Path(workflow_file(tmp_path, IDLE_QUEUE, DIAMOND)).read_text())
    name = f"cli-list-{uuid.uuid4().hex[:8]}"
    path.write_text(json.dumps({**body, "name": name}))
    created = await cli.ok("workflows", "create", str(path), "--json")
    workflow_id = created.json()["workflow_id"]

    listed = await cli.ok("workflows", "list", "--name", name)
    as_json = await cli.ok("workflows", "list", "--name", name, "--json")

    assert re.search(rf"{workflow_id}\s+{name}\s+active\s+1 queued, 3 waiting\s", listed.stdout), (
        str(listed)
    )
    assert "1 workflow" in listed.stdout, str(listed)
    assert [w["workflow_id"] for w in as_json.json()["workflows"]] == [workflow_id]


async def test_workflows_show_of_an_unknown_id_is_a_client_error(cli: Cli) -> None:
    result = await cli("workflows", "show", str(uuid.UUID(int=3)))

    assert result.returncode == 2, str(result)
    assert "not found" in result.stderr


async def test_trigger_depends_on_waits_for_its_parent(
    cli: Cli, api: httpx.AsyncClient, worker: WorkerFleet
) -> None:
    parent = await cli.ok("trigger", IDLE_QUEUE, "noop", "--lock-key", "cli:parent", "--json")
    parent_id = parent.json()["job_id"]

    child = await cli.ok(
        "trigger", WORKER_QUEUE, "noop", "--lock-key", "cli:child", "--depends-on", parent_id
    )
    child_id = re.search(r"job (\S+) created: waiting", child.stdout)
    shown = await cli.ok("status", child_id.group(1) if child_id else "?")
    await api.post(f"/api/v1/jobs/{parent_id}/cancel")
    after = await cli.ok("status", child_id.group(1) if child_id else "?", "--json")

    assert child_id, str(child)
    assert re.search(rf"depends on\s+{parent_id}", shown.stdout), str(shown)
    assert (after.json()["status"], after.json()["canceled_by"]) == ("canceled", parent_id)
