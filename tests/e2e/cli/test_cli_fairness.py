"""`dataloader queues fairness` against a real API: show, make fair, turn off, usage errors."""

from __future__ import annotations

import re

import httpx

from tests.support.cli_runner import Cli

FAIR_QUEUE = "cli.fair"


async def fairness_of(api: httpx.AsyncClient, queue: str) -> object:
    response = await api.get(f"/api/v1/queues/{queue}/fairness")
    assert response.status_code == 200, response.text
    return response.json()


async def test_queues_fairness_shows_sets_and_turns_off(cli: Cli, api: httpx.AsyncClient) -> None:
    before = await cli.ok("queues", "fairness", FAIR_QUEUE)

    made = await cli.ok("queues", "fairness", FAIR_QUEUE, "--by", "partition_key")
    stored = await fairness_of(api, FAIR_QUEUE)
    shown_json = await cli.ok("queues", "fairness", FAIR_QUEUE, "--json")
    table = await cli.ok("queues")
    off = await cli.ok("queues", "fairness", FAIR_QUEUE, "--off", "--json")

    assert "priority order" in before.stdout, str(before)
    assert f"{FAIR_QUEUE}: fair by partition_key" in made.stdout, str(made)
    assert stored == {"by": "partition_key"}
    assert shown_json.json() == {"by": "partition_key"}
    assert re.search(rf"^{re.escape(FAIR_QUEUE)}\s+active, fair\s", table.stdout, re.MULTILINE), (
        str(table)
    )
    assert off.json() == {"by": None}
    assert await fairness_of(api, FAIR_QUEUE) == {"by": None}


async def test_queues_fairness_usage_errors_name_the_option(
    cli: Cli, api: httpx.AsyncClient
) -> None:
    await cli.ok("queues", "fairness", FAIR_QUEUE, "--by", "partition_key")

    both = await cli("queues", "fairness", FAIR_QUEUE, "--off", "--by", "partition_key")
    # Well formed for the CLI, refused by the server: its 400 names the field.
    other = await cli("queues", "fairness", FAIR_QUEUE, "--by", "lock_key")

    assert both.returncode == 2, str(both)
    assert "--off" in both.stderr, str(both)
    assert both.stdout == "", str(both)
    assert other.returncode == 2, str(other)
    assert other.stderr.startswith("error: "), str(other)
    assert "by" in other.stderr, str(other)
    assert await fairness_of(api, FAIR_QUEUE) == {"by": "partition_key"}
    await cli.ok("queues", "fairness", FAIR_QUEUE, "--off")
