"""`dataloader queues` and `dataloader schedules` against a real API (and worker)."""

from __future__ import annotations

import re

import httpx

from tests.support.cli_runner import WORKER_QUEUE, Cli
from tests.support.workers import WorkerFleet

PAUSE_QUEUE = "cli.pausable"


async def test_queues_lists_pauses_and_resumes(cli: Cli) -> None:
    await cli.ok("trigger", PAUSE_QUEUE, "noop", "--lock-key", "cli:q", "--json")

    listed = await cli.ok("queues", "--json")
    paused = await cli.ok("queues", "pause", PAUSE_QUEUE)
    table = await cli.ok("queues")
    resumed = await cli.ok("queues", "resume", PAUSE_QUEUE, "--json")
    explicit = await cli.ok("--json", "queues", "list")

    queue = next(q for q in listed.json()["queues"] if q["queue"] == PAUSE_QUEUE)
    assert queue["queued"] == 1
    assert queue["paused"] is False
    assert f"queue {PAUSE_QUEUE} is paused (1 queued, 0 running)" in paused.stdout
    assert re.search(rf"{re.escape(PAUSE_QUEUE)}\s+paused\s+1\s+0\s", table.stdout), str(table)
    assert resumed.json()["queue"] == PAUSE_QUEUE
    assert resumed.json()["paused"] is False
    assert any(q["queue"] == PAUSE_QUEUE for q in explicit.json()["queues"])


async def test_queues_pause_of_a_bad_name_is_a_client_error(cli: Cli) -> None:
    result = await cli("queues", "pause", "bad name!")

    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: ")


async def test_schedules_list_show_enable_disable(cli: Cli, api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/api/v1/schedules",
        json={
            "name": "cli-nightly",
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "queue": WORKER_QUEUE,
            "task": "noop",
            "args": {"steps": 1},
            "lock_key": "cli-nightly",
        },
    )
    assert created.status_code == 201, created.text

    table = await cli.ok("schedules")
    listed = await cli.ok("schedules", "list", "--json")
    shown = await cli.ok("schedules", "show", "cli-nightly")
    disabled = await cli.ok("schedules", "disable", "cli-nightly")
    disabled_json = await cli.ok("schedules", "show", "cli-nightly", "--json")
    enabled = await cli.ok("schedules", "enable", "cli-nightly")
    missing = await cli("schedules", "show", "no-such-schedule")

    assert re.search(r"cli-nightly\s+yes\s+0 3 \* \* \*\s+Europe/Berlin", table.stdout), str(table)
    assert [s["name"] for s in listed.json()["schedules"]] == ["cli-nightly"]
    upcoming = re.findall(r"^\s+\d{4}-\d\d-\d\d \d\d:00:00 \(in ", shown.stdout, re.MULTILINE)
    assert "upcoming" in shown.stdout, str(shown)
    assert len(upcoming) == 5, str(shown)
    assert "schedule cli-nightly disabled" in disabled.stdout
    assert disabled_json.json()["enabled"] is False
    assert "schedule cli-nightly enabled; next run" in enabled.stdout
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ")


async def test_schedules_run_wait_follows_the_job(
    cli: Cli, api: httpx.AsyncClient, worker: WorkerFleet
) -> None:
    created = await api.post(
        "/api/v1/schedules",
        json={
            "name": "cli-run-now",
            "cron": "@yearly",
            "queue": WORKER_QUEUE,
            "task": "noop",
            "args": {"steps": 2, "sleep": 0.1},
            "lock_key": "cli-run-now",
        },
    )
    assert created.status_code == 201, created.text

    ran = await cli.ok("schedules", "run", "cli-run-now", "--json")
    waited = await cli.ok("schedules", "run", "cli-run-now", "--wait")

    assert ran.json()["job"]["created"] is True
    assert ran.json()["schedule"]["last_job_id"] == ran.json()["job"]["job_id"]
    assert re.search(r"job \S+ succeeded in", waited.stdout), str(waited)
