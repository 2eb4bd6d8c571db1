"""`dataloader queues limits` and the rate-limit fields of a job, against a real API and worker."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx

from tests.support.cli_runner import IDLE_QUEUE, WORKER_QUEUE, Cli
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

LIMITED_QUEUE = "cli.limited"
NONE = {"start": None, "per_rate_key": None}


async def limits_of(api: httpx.AsyncClient, queue: str) -> Any:
    response = await api.get(f"/api/v1/queues/{queue}/limits")
    assert response.status_code == 200, response.text
    return response.json()


async def test_queues_limits_sets_shows_keeps_the_other_and_clears(
    cli: Cli, api: httpx.AsyncClient
) -> None:
    before = await cli.ok("queues", "limits", LIMITED_QUEUE)
    before_json = await cli.ok("queues", "limits", LIMITED_QUEUE, "--json")

    both = await cli.ok(
        "queues", "limits", LIMITED_QUEUE, "--start", "20/1s", "--per-rate-key", "5/500ms"
    )
    stored = await limits_of(api, LIMITED_QUEUE)
    # One option given: the other limit stays as the server had it.
    start_only = await cli.ok("queues", "limits", LIMITED_QUEUE, "--start", "30/1m", "--json")
    key_only = await cli.ok("--json", "queues", "limits", LIMITED_QUEUE, "--per-rate-key", "2/5")
    shown = await cli.ok("queues", "limits", LIMITED_QUEUE)

    assert re.search(r"start\s+none", before.stdout), str(before)
    assert re.search(r"per rate_key\s+none", before.stdout), str(before)
    assert before_json.json() == NONE
    assert stored == {
        "start": {"count": 20, "period_sec": 1.0},
        "per_rate_key": {"count": 5, "period_sec": 0.5},
    }
    assert re.search(r"start\s+20/1s\s+\(at most 20 starts per 1s", both.stdout), str(both)
    assert re.search(r"per rate_key\s+5/500ms\s+\(at most 5 starts per 500ms", both.stdout)
    assert start_only.json() == {
        "start": {"count": 30, "period_sec": 60.0},
        "per_rate_key": {"count": 5, "period_sec": 0.5},
    }
    assert key_only.json() == {
        "start": {"count": 30, "period_sec": 60.0},
        "per_rate_key": {"count": 2, "period_sec": 5.0},
    }
    assert re.search(r"start\s+30/1m\s", shown.stdout), str(shown)
    assert re.search(r"per rate_key\s+2/5s\s", shown.stdout), str(shown)

    cleared = await cli.ok("queues", "limits", LIMITED_QUEUE, "--clear", "--json")

    assert cleared.json() == NONE
    assert await limits_of(api, LIMITED_QUEUE) == NONE


async def test_queue_table_has_a_limits_column(cli: Cli) -> None:
    await cli.ok("queues", "limits", LIMITED_QUEUE, "--start", "20/1s", "--per-rate-key", "5/1s")
    await cli.ok("trigger", IDLE_QUEUE, "noop", "--lock-key", "cli:limits-table")

    table = await cli.ok("queues")

    header = table.stdout.splitlines()[0]
    assert re.search(r"OLDEST\s+LIMITS\s+LAST HOUR", header), str(table)
    assert re.search(
        rf"^{re.escape(LIMITED_QUEUE)}\s+active\s+0\s+0\s+-\s+20/1s · 5/1s per key\s",
        table.stdout,
        re.MULTILINE,
    ), str(table)
    # A queue without limits shows a dash in the column.
    assert re.search(
        rf"^{re.escape(IDLE_QUEUE)}\s+active\s+1\s+0\s+\S.*?\s+-\s+-", table.stdout, re.MULTILINE
    ), str(table)
    await cli.ok("queues", "limits", LIMITED_QUEUE, "--clear")


async def test_queues_limits_bad_spec_is_a_usage_error_naming_the_option(
    cli: Cli, api: httpx.AsyncClient
) -> None:
    kept = {"start": {"count": 3, "period_sec": 1.0}, "per_rate_key": None}
    await cli.ok("queues", "limits", LIMITED_QUEUE, "--start", "3/1s")

    no_period = await cli("queues", "limits", LIMITED_QUEUE, "--start", "20")
    bad_unit = await cli("queues", "limits", LIMITED_QUEUE, "--per-rate-key", "5/1d")
    zero = await cli("queues", "limits", LIMITED_QUEUE, "--per-rate-key", "0/1s")
    both_ways = await cli("queues", "limits", LIMITED_QUEUE, "--clear", "--start", "1/1s")
    # Well formed but out of the server's range: its 400 names the field.
    too_many = await cli("queues", "limits", LIMITED_QUEUE, "--start", "20000/1s")
    too_long = await cli("queues", "limits", LIMITED_QUEUE, "--per-rate-key", "1/100000")

    for result, option in [
        (no_period, "--start"),
        (bad_unit, "--per-rate-key"),
        (zero, "--per-rate-key"),
        (both_ways, "--clear"),
    ]:
        assert result.returncode == 2, str(result)
        assert option in result.stderr, str(result)
        assert result.stdout == "", str(result)
    assert too_many.returncode == 2, str(too_many)
    assert too_many.stderr.startswith("error: "), str(too_many)
    assert "count" in too_many.stderr, str(too_many)
    assert too_long.returncode == 2, str(too_long)
    assert "period_sec" in too_long.stderr, str(too_long)
    assert await limits_of(api, LIMITED_QUEUE) == kept


async def test_a_job_held_back_by_a_rate_limit_shows_what_it_waits_for_and_until_when(
    cli: Cli, api: httpx.AsyncClient, worker: WorkerFleet
) -> None:
    # One start per hour on the worker's queue: the first job uses it, the second waits.
    await cli.ok("queues", "limits", WORKER_QUEUE, "--start", "1/1h")
    try:
        first = await cli.ok(
            "trigger", WORKER_QUEUE, "noop", "--lock-key", "cli:rated-1", "--wait", "--json"
        )
        assert first.json()["status"] == "succeeded"
        created = await cli.ok(
            "trigger",
            WORKER_QUEUE,
            "noop",
            "--lock-key",
            "cli:rated-2",
            "--rate-key",
            "partner-a",
            "--concurrency-key",
            "partner-api",
            "--concurrency-limit",
            "3",
            "--json",
        )
        job_id = created.json()["job_id"]

        async def held_back() -> dict[str, Any] | None:
            job: dict[str, Any] = (await api.get(f"/api/v1/jobs/{job_id}/status")).json()
            return job if job["waiting_for"] == "rate_limit" else None

        job = await wait_until(
            held_back,
            timeout=30,
            what="the second job waits for the rate limit",
            diagnostics=worker.diagnostics,
        )
        shown = await cli.ok("status", job_id)
        events = await cli.ok("events", job_id)
    finally:
        await cli.ok("queues", "limits", WORKER_QUEUE, "--clear")

    until = datetime.fromisoformat(job["available_at"]).astimezone().strftime("%H:%M:%S")
    assert job["status"] == "queued"
    assert re.search(
        rf"status\s+queued, waiting for rate limit until {until} \(in (59 min|1 h)", shown.stdout
    ), str(shown)
    assert re.search(r"rate_key\s+partner-a\n", shown.stdout), str(shown)
    assert re.search(r"concurrency\s+partner-api \(at most 3 at once\)", shown.stdout), str(shown)
    assert re.search(r"rate_limited\s+0\s+\{\"limit\":\"queue\"", events.stdout), str(events)
