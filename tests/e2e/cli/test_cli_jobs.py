"""`dataloader trigger/status/cancel/retry/events/list` against a real API and worker."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid

import httpx
import pytest

from tests.support.api_servers import ApiServer
from tests.support.cli_runner import IDLE_QUEUE, WORKER_QUEUE, Cli
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

pytestmark = pytest.mark.usefixtures("worker")


def key() -> str:
    """A lock key no other test uses."""
    return f"cli:{uuid.uuid4().hex[:12]}"


async def job_status(api: httpx.AsyncClient, job_id: str) -> str:
    """The job's status as the API reports it."""
    response = await api.get(f"/api/v1/jobs/{job_id}/status")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def test_trigger_wait_succeeds_and_shows_progress(cli: Cli, api: httpx.AsyncClient) -> None:
    result = await cli(
        "trigger",
        WORKER_QUEUE,
        "noop",
        "--lock-key",
        key(),
        "--arg",
        "steps=8",
        "--arg",
        "sleep=0.4",
        "--wait",
    )

    assert result.returncode == 0, str(result)
    job_id = re.search(r"job (\S+) succeeded in [\d.]+ s \(attempt 1/5\)", result.stdout)
    assert job_id, str(result)
    assert await job_status(api, job_id.group(1)) == "succeeded"
    # Progress lines (no terminal: one per change) come from the saved progress of the job.
    assert re.search(r"running attempt 1/5\s+[1-7]/8 \(\d+%\)", result.stderr), str(result)
    assert "succeeded attempt 1/5  8/8 (100%)" in result.stderr, str(result)


async def test_trigger_wait_draws_a_progress_bar_on_a_terminal(cli: Cli) -> None:
    result = await cli(
        "trigger",
        WORKER_QUEUE,
        "noop",
        "--lock-key",
        key(),
        "--args",
        '{"steps": 3, "sleep": 0.2}',
        "--wait",
        env={"TTY_COMPATIBLE": "1", "COLUMNS": "120"},
    )

    assert result.returncode == 0, str(result)
    assert "100%" in result.stderr, str(result)
    assert "3/3" in result.stderr, str(result)
    assert "━" in result.stderr, str(result)  # the bar itself


async def test_trigger_wait_json_prints_the_final_job(cli: Cli) -> None:
    result = await cli(
        "trigger",
        WORKER_QUEUE,
        "noop",
        "--lock-key",
        key(),
        "--args",
        '{"steps": 2, "sleep": 0.1}',
        "--wait",
        "--json",
    )

    assert result.returncode == 0, str(result)
    job = result.json()
    assert job["status"] == "succeeded"
    assert job["progress"] == {"processed": 2, "total": 2}
    assert result.stderr == ""


async def test_trigger_wait_exits_1_when_the_job_fails_and_retry_runs_it_again(
    cli: Cli, api: httpx.AsyncClient
) -> None:
    failed = await cli(
        "trigger",
        WORKER_QUEUE,
        "noop",
        "--lock-key",
        key(),
        "--args",
        '{"fail": true, "steps": 1}',
        "--max-attempts",
        "1",
        "--wait",
    )

    assert failed.returncode == 1, str(failed)
    match = re.search(r"job (\S+) failed \(attempt 1/1\)", failed.stdout)
    assert match, str(failed)
    assert "error: NoopFailure: noop failed on purpose at step 0" in failed.stderr
    job_id = match.group(1)

    retried = await cli.ok("retry", job_id, "--json")
    assert retried.json()["status"] == "queued"
    assert retried.json()["max_attempts"] == 2

    again = await cli("status", job_id, "--wait")
    assert again.returncode == 1, str(again)
    assert f"job {job_id} failed (attempt 2/2)" in again.stdout

    events = await cli.ok("events", job_id, "--json")
    names = [event["event"] for event in events.json()["events"]]
    assert names[0] == "queued"
    assert "retried" in names
    assert names[-1] == "failed"
    human = await cli.ok("events", job_id)
    assert re.search(r"retried\s+1", human.stdout), str(human)


async def test_trigger_wait_shows_the_error_and_next_retry_of_a_failed_attempt(
    cli: Cli,
) -> None:
    result = await cli(
        "trigger",
        WORKER_QUEUE,
        "noop",
        "--lock-key",
        key(),
        "--args",
        '{"fail": true, "fail_attempts": 1, "steps": 1}',
        "--max-attempts",
        "2",
        "--wait",
    )

    assert result.returncode == 0, str(result)
    # running -> queued after attempt 1 failed: the line says why and when it runs again.
    retry_line = re.search(
        r"queued attempt 1/2  retry at (\d\d:\d\d:\d\d) \((in [^)]+|just now)\) after "
        r"NoopFailure: noop failed on purpose at step 0\n",
        result.stderr,
    )
    assert retry_line, str(result)
    # What follows is attempt 2 (the stream may skip its short `running` and show its end).
    assert "attempt 2/2" in result.stderr[retry_line.end() :], str(result)
    assert re.search(r"job \S+ succeeded in .* \(attempt 2/2\)", result.stdout), str(result)


async def test_trigger_wait_ctrl_c_leaves_the_job_running(cli: Cli, api: httpx.AsyncClient) -> None:
    process = await cli.start(
        "trigger",
        WORKER_QUEUE,
        "noop",
        "--lock-key",
        key(),
        "--arg",
        "steps=100",
        "--arg",
        "sleep=0.2",
        "--wait",
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first_line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    job_id = first_line.split()[1]

    seen = ""

    async def running_shown() -> bool:
        nonlocal seen
        assert process.stderr is not None
        seen += (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        return "running" in seen

    await wait_until(running_shown, timeout=30, what="the running line")
    process.send_signal(signal.SIGINT)
    rest = (await asyncio.wait_for(process.stderr.read(), 30)).decode()
    assert await asyncio.wait_for(process.wait(), 30) == 130
    assert f"job {job_id} keeps running" in rest
    assert await job_status(api, job_id) == "running"
    canceled = await cli.ok("cancel", job_id)
    assert "cancel requested, the worker stops it at its next checkpoint" in canceled.stdout


async def test_trigger_json_and_idempotency_key(cli: Cli) -> None:
    args = ("trigger", IDLE_QUEUE, "noop", "--lock-key", key(), "--idempotency-key", key())
    first = await cli.ok(*args, "--json")
    second = await cli.ok(*args)

    assert first.json()["created"] is True
    assert first.json()["status"] == "queued"
    job_id = first.json()["job_id"]
    assert f"job {job_id} already exists (same idempotency key): queued" in second.stdout


async def test_status_shows_the_job(cli: Cli) -> None:
    lock_key = key()
    created = await cli.ok(
        "trigger",
        IDLE_QUEUE,
        "noop",
        "--lock-key",
        lock_key,
        "--args",
        '{"steps": 2}',
        "--priority",
        "7",
        "--max-attempts",
        "3",
        "--partition-key",
        "p1",
        "--json",
    )
    job_id = created.json()["job_id"]

    human = await cli.ok("status", job_id)
    as_json = await cli.ok("--json", "status", job_id)

    for expected in (job_id, "queued", IDLE_QUEUE, lock_key, "0/3", '{"steps":2}', "p1"):
        assert expected in human.stdout, str(human)
    assert re.search(r"priority\s+7", human.stdout)
    assert as_json.json()["job_id"] == job_id
    assert as_json.json()["priority"] == 7


async def test_cancel_a_queued_job_then_again_is_a_client_error(cli: Cli) -> None:
    job_id = (await cli.ok("trigger", IDLE_QUEUE, "noop", "--lock-key", key(), "--json")).json()[
        "job_id"
    ]

    canceled = await cli.ok("cancel", job_id)
    again = await cli("cancel", job_id)
    events = await cli.ok("events", job_id)

    assert f"job {job_id} canceled" in canceled.stdout
    assert again.returncode == 2, str(again)
    assert again.stderr.startswith("error: ")
    assert "canceled" in again.stderr
    assert re.search(r"queued\s+0", events.stdout)
    assert re.search(r"canceled\s+0", events.stdout)


async def test_list_filters_pages_and_follows_cursors(cli: Cli) -> None:
    lock_key = key()
    ids = [
        (await cli.ok("trigger", IDLE_QUEUE, "noop", "--lock-key", lock_key, "--json")).json()[
            "job_id"
        ]
        for _ in range(5)
    ]

    everything = await cli.ok("list", "--lock-key", lock_key, "--limit", "2", "--all", "--json")
    first_page = await cli.ok("list", "--lock-key", lock_key, "--limit", "2", "--json")
    human = await cli.ok("list", "--lock-key", lock_key, "--limit", "2")
    human_all = await cli.ok("list", "--lock-key", lock_key, "--status", "queued", "--all")
    none = await cli.ok("list", "--lock-key", lock_key, "--status", "failed,lost")

    assert [job["job_id"] for job in everything.json()["jobs"]] == ids[::-1]  # newest first
    assert everything.json()["next_cursor"] is None
    assert len(first_page.json()["jobs"]) == 2
    assert first_page.json()["next_cursor"]
    assert ids[4] in human.stdout
    assert ids[3] in human.stdout
    assert ids[0] not in human.stdout
    assert "2 jobs; more with --all, or --cursor" in human.stdout
    assert all(job_id in human_all.stdout for job_id in ids)
    assert "5 jobs" in human_all.stdout
    assert none.stdout.strip() == "no jobs"


async def test_unknown_job_is_a_client_error(cli: Cli) -> None:
    missing = str(uuid.uuid4())
    for command in ("status", "cancel", "events", "retry"):
        result = await cli(command, missing)
        assert result.returncode == 2, str(result)
        assert result.stderr.startswith("error: "), str(result)
        assert "not found" in result.stderr, str(result)
    not_an_id = await cli("status", "nope")
    assert not_an_id.returncode == 2
    assert "not a UUID" in not_an_id.stderr


async def test_trigger_rejects_bad_input(cli: Cli) -> None:
    not_object = await cli("trigger", IDLE_QUEUE, "noop", "--lock-key", "k", "--args", "[1]")
    bad_pair = await cli("trigger", IDLE_QUEUE, "noop", "--lock-key", "k", "--arg", "novalue")
    unknown_task = await cli("trigger", IDLE_QUEUE, "no.such.task", "--lock-key", "k")
    no_lock_key = await cli("trigger", IDLE_QUEUE, "noop")

    assert not_object.returncode == 2
    assert "must be a JSON object" in not_object.stderr
    assert bad_pair.returncode == 2
    assert "key=value" in bad_pair.stderr
    assert unknown_task.returncode == 2, str(unknown_task)
    assert "error: unknown task 'no.such.task'" in unknown_task.stderr
    assert no_lock_key.returncode == 2
    assert "--lock-key" in no_lock_key.stderr


async def test_trigger_wait_follows_the_event_stream(
    cli: Cli, api_server: ApiServer, worker: WorkerFleet
) -> None:
    result = await cli(
        "trigger",
        WORKER_QUEUE,
        "noop",
        "--lock-key",
        key(),
        "--args",
        '{"steps": 2, "sleep": 0.3}',
        "--wait",
        "--json",
    )

    assert result.returncode == 0, str(result)
    job_id = result.json()["job_id"]
    log = api_server.log_tail()
    if f"/api/v1/jobs/{job_id}/stream" not in api_server.log_path.read_text():
        pytest.fail(f"the CLI did not open the event stream:\n{log}")
    polls = api_server.log_path.read_text().count(f"/api/v1/jobs/{job_id}/status")
    assert polls == 0, f"the CLI polled /status although the stream exists:\n{log}"
    assert json.loads(result.stdout)["status"] == "succeeded"
