"""/api/v1/schedules on a running server: create, read, change, enable, run now, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

SCHEDULES = "/api/v1/schedules"


def schedule_body(**overrides: object) -> dict[str, Any]:
    """A valid schedule: every five minutes, a noop job."""
    values: dict[str, Any] = {
        "name": f"sched-{uuid.uuid4().hex[:10]}",
        "cron": "*/5 * * * *",
        "queue": "etl.default",
        "task": "noop",
        "lock_key": "reports",
        "args": {"steps": 1},
    }
    values.update(overrides)
    return values


async def create(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post(SCHEDULES, json=schedule_body(**overrides))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def times(values: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(value) for value in values]


async def test_schedules_create_shows_the_next_fire_times(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    created = await create(client, cron="0 3 * * *", timezone="Europe/Berlin", priority=7)

    assert created["enabled"] is True
    assert created["priority"] == 7
    assert created["source"] == "api"
    upcoming = times(created["upcoming"])
    assert len(upcoming) == 5
    assert upcoming == sorted(upcoming)
    assert upcoming[0] == datetime.fromisoformat(created["next_run_at"])
    db_now = await api_db.fetchval("SELECT now()")
    assert upcoming[0] > db_now
    # 03:00 in Berlin is 01:00 or 02:00 UTC depending on the season.
    assert all(fire.minute == 0 and fire.hour in (1, 2) for fire in upcoming)

    fetched = (await client.get(f"{SCHEDULES}/{created['name']}")).json()
    assert fetched["schedule_id"] == created["schedule_id"]
    assert fetched["upcoming"] == created["upcoming"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"cron": "61 * * * *"}, "out of range"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": "0 0 31 2 *"}, "never fires"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"task": "no.such.task"}, "unknown task 'no.such.task'"),
        ({"name": "has space"}, "field `name`"),
        ({"name": ""}, "field `name`"),
        ({"max_attempts": 0}, "field `max_attempts`"),
        ({"color": "blue"}, "color"),
    ],
)
async def test_schedules_bad_input_is_a_400_that_says_what_is_wrong(
    client: httpx.AsyncClient, overrides: dict[str, Any], fragment: str | None
) -> None:
    response = await client.post(SCHEDULES, json=schedule_body(**overrides))
    if fragment is None:
        assert response.status_code == 201, response.text
        return
    assert response.status_code == 400, response.text
    assert fragment in response.json()["detail"]


async def test_schedules_a_taken_name_is_a_409(client: httpx.AsyncClient) -> None:
    first = await create(client)
    response = await client.post(SCHEDULES, json=schedule_body(name=first["name"]))
    assert response.status_code == 409
    assert first["name"] in response.json()["detail"]


async def test_schedules_unknown_names_are_404(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/nope"),
        ("PATCH", "/nope"),
        ("DELETE", "/nope"),
        ("POST", "/nope/enable"),
        ("POST", "/nope/run"),
    ]:
        kwargs: dict[str, Any] = {"json": {"cron": "* * * * *"}} if method == "PATCH" else {}
        response = await client.request(method, SCHEDULES + path, **kwargs)
        assert response.status_code == 404, (method, path, response.text)


async def test_schedules_update_changes_given_fields_and_retimes_on_a_new_cron(
    client: httpx.AsyncClient,
) -> None:
    created = await create(client, cron="0 3 * * *")

    changed = await client.patch(
        f"{SCHEDULES}/{created['name']}", json={"cron": "*/10 * * * *", "args": {"steps": 2}}
    )

    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["cron"] == "*/10 * * * *"
    assert body["args"] == {"steps": 2}
    assert body["lock_key"] == created["lock_key"]
    assert all(fire.minute % 10 == 0 for fire in times(body["upcoming"]))
    assert body["next_run_at"] != created["next_run_at"]


async def test_schedules_a_bad_update_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    created = await create(client)
    path = f"{SCHEDULES}/{created['name']}"

    for change in ({"cron": "nonsense"}, {"timezone": "Nowhere/Land"}, {"task": "nope"}):
        response = await client.patch(path, json=change)
        assert response.status_code == 400, response.text

    after = (await client.get(path)).json()
    assert {k: after[k] for k in ("cron", "timezone", "task", "next_run_at", "updated_at")} == {
        k: created[k] for k in ("cron", "timezone", "task", "next_run_at", "updated_at")
    }


async def test_schedules_disable_stops_and_enable_restarts_from_now(
    client: httpx.AsyncClient,
) -> None:
    created = await create(client)
    path = f"{SCHEDULES}/{created['name']}"

    disabled = (await client.post(f"{path}/disable")).json()
    assert disabled["enabled"] is False
    assert disabled["next_run_at"] is None
    assert disabled["upcoming"] == []

    enabled = (await client.post(f"{path}/enable")).json()
    assert enabled["enabled"] is True
    assert enabled["next_run_at"] is not None
    assert len(enabled["upcoming"]) == 5


async def test_schedules_run_now_creates_the_job_from_the_template(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    created = await create(client, lock_key="run-now-key", args={"steps": 3})
    await client.post(f"{SCHEDULES}/{created['name']}/disable")

    response = await client.post(f"{SCHEDULES}/{created['name']}/run")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["job"]["created"] is True
    job = await api_db.fetchrow(
        "SELECT task, args::text, lock_key, producer, status FROM dl_jobs WHERE job_id = $1",
        uuid.UUID(body["job"]["job_id"]),
    )
    assert job["task"] == "noop"
    assert job["lock_key"] == "run-now-key"
    assert job["producer"] == f"dl:schedule:{created['name']}"
    assert job["status"] == "queued"
    assert body["schedule"]["last_job_id"] == body["job"]["job_id"]
    assert body["schedule"]["enabled"] is False  # running it now does not enable it


async def test_schedules_list_pages_by_name(client: httpx.AsyncClient) -> None:
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    for index in range(5):
        await create(client, name=f"{prefix}-{index}")

    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if after is not None:
            params["after"] = after
        page = (await client.get(SCHEDULES, params=params)).json()
        seen.extend(item["name"] for item in page["schedules"])
        after = page["next_after"]
        if after is None:
            break

    assert seen == sorted(seen)
    assert [name for name in seen if name.startswith(prefix)] == [
        f"{prefix}-{index}" for index in range(5)
    ]
    assert (await client.get(SCHEDULES, params={"limit": 0})).status_code == 400
    assert (await client.get(SCHEDULES, params={"limit": 501})).status_code == 400


async def test_schedules_delete_removes_it_and_keeps_its_jobs(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    created = await create(client)
    path = f"{SCHEDULES}/{created['name']}"
    job_id = (await client.post(f"{path}/run")).json()["job"]["job_id"]

    assert (await client.delete(path)).status_code == 204
    assert (await client.get(path)).status_code == 404
    assert await api_db.fetchval(
        "SELECT count(*) FROM dl_jobs WHERE job_id = $1", uuid.UUID(job_id)
    )
