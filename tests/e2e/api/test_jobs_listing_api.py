"""GET /api/v1/jobs (filters, keyset pages), GET /api/v1/jobs/{id} and /events of a real server.

The server is shared by the module, so each test works in a queue of its own.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

JOBS = "/api/v1/jobs"
BULK = "/api/v1/jobs/trigger/bulk"
BASE_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def new_queue() -> str:
    return f"list.{uuid.uuid4().hex[:12]}"


async def create_jobs(
    client: httpx.AsyncClient, queue: str, count: int, **fields: Any
) -> list[str]:
    """`count` queued noop jobs in `queue` (one transaction); their ids in creation order."""
    items = [{"queue": queue, "task": "noop", "lock_key": f"k-{i}", **fields} for i in range(count)]
    response = await client.post(BULK, json={"jobs": items})
    assert response.status_code == 200, response.text
    return [job["job_id"] for job in response.json()["jobs"]]


async def set_created(api_db: asyncpg.Connection, ids: list[str], start: datetime) -> None:
    """Give job i the creation time start + i minutes (the last one is the newest)."""
    for i, job_id in enumerate(ids):
        await api_db.execute(
            "UPDATE dl_jobs SET created_at = $2 WHERE job_id = $1",
            uuid.UUID(job_id),
            start + timedelta(minutes=i),
        )


async def set_finished(
    api_db: asyncpg.Connection, job_id: str, status: str, finished_at: datetime | None = None
) -> None:
    await api_db.execute(
        "UPDATE dl_jobs SET status = $2, attempt = 1, finished_at = $3 WHERE job_id = $1",
        uuid.UUID(job_id),
        status,
        finished_at or datetime.now(UTC),
    )


async def list_ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """Every page of a listing, following next_cursor; the job ids in listing order."""
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(JOBS, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"jobs", "next_cursor"}
        ids.extend(job["job_id"] for job in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("listing did not end")


async def test_list_jobs_newest_first_in_keyset_pages(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    ids = await create_jobs(client, queue, 7)
    await set_created(api_db, ids, BASE_TIME)

    first = (await client.get(JOBS, params={"queue": queue, "limit": 3})).json()
    assert [job["job_id"] for job in first["jobs"]] == ids[::-1][:3]
    assert first["jobs"][0]["status"] == "queued"
    assert first["jobs"][0]["queue"] == queue
    assert first["next_cursor"]

    assert await list_ids(client, queue=queue, limit=3) == ids[::-1]
    assert await list_ids(client, queue=queue, limit=7) == ids[::-1]
    assert await list_ids(client, queue=queue) == ids[::-1]


async def test_list_jobs_equal_created_at_ordered_by_job_id_without_gaps(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    ids = await create_jobs(client, queue, 9)
    await api_db.execute("UPDATE dl_jobs SET created_at = $2 WHERE queue = $1", queue, BASE_TIME)

    listed = await list_ids(client, queue=queue, limit=2)

    assert listed == sorted(ids, key=uuid.UUID, reverse=True)


async def test_list_jobs_pages_do_not_shift_when_jobs_are_created_meanwhile(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    ids = await create_jobs(client, queue, 4)
    await set_created(api_db, ids, BASE_TIME)
    first = (await client.get(JOBS, params={"queue": queue, "limit": 2})).json()

    newer = await create_jobs(client, queue, 3)
    second = (
        await client.get(JOBS, params={"queue": queue, "limit": 2, "cursor": first["next_cursor"]})
    ).json()

    assert [job["job_id"] for job in second["jobs"]] == [ids[1], ids[0]]
    assert second["next_cursor"] is None
    assert set(newer) <= set(await list_ids(client, queue=queue, limit=3))


@pytest.mark.parametrize(
    "field",
    ["lock_key", "partition_key", "producer", "consumer_group", "task"],
)
async def test_list_jobs_filters_by_text_field(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, field: str
) -> None:
    queue = new_queue()
    ids = await create_jobs(client, queue, 4)
    wanted = f"{field}-{uuid.uuid4().hex[:8]}"
    # task must name a pipeline on trigger; the others could be sent, but one path is enough.
    await api_db.execute(
        f"UPDATE dl_jobs SET {field} = $2 WHERE job_id = ANY($1::uuid[])",
        [uuid.UUID(ids[1]), uuid.UUID(ids[3])],
        wanted,
    )

    listed = await list_ids(client, **{field: wanted})

    assert sorted(listed) == sorted([ids[1], ids[3]])
    assert await list_ids(client, queue=queue, **{field: wanted}) == listed
    assert await list_ids(client, **{field: f"{wanted}-none"}) == []


async def test_list_jobs_trigger_fields_are_filterable(client: httpx.AsyncClient) -> None:
    queue = new_queue()
    tag = uuid.uuid4().hex[:8]
    [job_id] = await create_jobs(
        client,
        queue,
        1,
        partition_key=f"p-{tag}",
        producer=f"prod-{tag}",
        consumer_group=f"group-{tag}",
    )
    await create_jobs(client, queue, 2)

    listed = await list_ids(
        client,
        queue=queue,
        task="noop",
        partition_key=f"p-{tag}",
        producer=f"prod-{tag}",
        consumer_group=f"group-{tag}",
        lock_key="k-0",
    )

    assert listed == [job_id]


async def test_list_jobs_empty_parameters_mean_no_filter(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    ids = await create_jobs(client, queue, 2)

    listed = await list_ids(
        client, queue=queue, task="", lock_key="", status="", created_after="", producer=""
    )

    assert sorted(listed) == sorted(ids)


async def test_list_jobs_filters_by_status_list(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    queued, failed, lost, canceled, succeeded = await create_jobs(client, queue, 5)
    await set_finished(api_db, failed, "failed")
    await set_finished(api_db, lost, "lost")
    await set_finished(api_db, canceled, "canceled")
    await set_finished(api_db, succeeded, "succeeded")
    await api_db.execute(
        "UPDATE dl_jobs SET status = 'running', attempt = 1 WHERE job_id = $1",
        uuid.UUID(queued),
    )

    assert sorted(await list_ids(client, queue=queue, status="failed,lost")) == sorted(
        [failed, lost]
    )
    assert await list_ids(client, queue=queue, status="running") == [queued]
    assert await list_ids(client, queue=queue, status=" Canceled , ,canceled") == [canceled]
    assert sorted(await list_ids(client, queue=queue, status="running,succeeded")) == sorted(
        [queued, succeeded]
    )
    assert await list_ids(client, queue=queue, status="queued") == []


async def test_list_jobs_created_range_is_half_open_and_naive_times_are_utc(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    ids = await create_jobs(client, queue, 5)
    await set_created(api_db, ids, BASE_TIME)  # 12:00, 12:01, ..., 12:04 UTC

    between = await list_ids(
        client,
        queue=queue,
        created_after="2026-03-01T12:01:00Z",
        created_before="2026-03-01T12:03:00Z",
    )
    naive = await list_ids(client, queue=queue, created_after="2026-03-01T12:03:00")
    offset = await list_ids(client, queue=queue, created_before="2026-03-01T14:01:00+02:00")
    inverted = await list_ids(
        client,
        queue=queue,
        created_after="2026-03-01T12:03:00Z",
        created_before="2026-03-01T12:01:00Z",
    )

    assert between == [ids[2], ids[1]]
    assert naive == [ids[4], ids[3]]
    assert offset == [ids[0]]
    assert inverted == []


async def test_list_jobs_finished_range_excludes_unfinished_jobs(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    queue = new_queue()
    ids = await create_jobs(client, queue, 4)
    await set_created(api_db, ids, BASE_TIME)
    await set_finished(api_db, ids[0], "succeeded", BASE_TIME + timedelta(hours=1))
    await set_finished(api_db, ids[1], "failed", BASE_TIME + timedelta(hours=2))
    await set_finished(api_db, ids[2], "canceled", BASE_TIME + timedelta(hours=3))

    in_range = await list_ids(
        client,
        queue=queue,
        finished_after=(BASE_TIME + timedelta(hours=1)).isoformat(),
        finished_before=(BASE_TIME + timedelta(hours=3)).isoformat(),
    )
    after = await list_ids(
        client, queue=queue, finished_after=(BASE_TIME + timedelta(hours=2)).isoformat()
    )
    failed_before = await list_ids(
        client,
        queue=queue,
        status="failed,succeeded",
        finished_before=(BASE_TIME + timedelta(hours=2, seconds=1)).isoformat(),
    )

    assert in_range == [ids[1], ids[0]]
    assert after == [ids[2], ids[1]]
    assert failed_before == [ids[1], ids[0]]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "failed,done"}, "`status`"),
        ({"created_after": "yesterday"}, "`created_after`"),
        ({"finished_before": "2026-13-01T00:00:00Z"}, "`finished_before`"),
        ({"cursor": "not-a-cursor"}, "`cursor`"),
        ({"cursor": base64.urlsafe_b64encode(b"2026-01-01|x").decode()}, "`cursor`"),
        ({"limit": "0"}, "`limit`"),
        ({"limit": "501"}, "`limit`"),
        ({"limit": "many"}, "`limit`"),
        ({"queue": "a\x00b"}, "`queue`"),
        ({"lock_key": "x" * 1001}, "`lock_key`"),
    ],
    ids=[
        "status",
        "timestamp",
        "bad-month",
        "cursor",
        "cursor-content",
        "limit-0",
        "limit-501",
        "limit-text",
        "nul",
        "too-long",
    ],
)
async def test_list_jobs_bad_parameter_is_400_naming_it(
    client: httpx.AsyncClient, params: dict[str, str], named: str
) -> None:
    response = await client.get(JOBS, params=params)

    assert response.status_code == 400, response.text
    assert named.strip("`") in response.json()["detail"]


async def test_list_jobs_unknown_status_lists_the_valid_ones(client: httpx.AsyncClient) -> None:
    response = await client.get(JOBS, params={"status": "done"})

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "'done'" in detail
    assert "queued, running, succeeded, failed, canceled, lost" in detail


async def test_list_jobs_limit_bounds_the_page(client: httpx.AsyncClient) -> None:
    queue = new_queue()
    await create_jobs(client, queue, 3)

    one = (await client.get(JOBS, params={"queue": queue, "limit": 1})).json()
    most = (await client.get(JOBS, params={"queue": queue, "limit": 500})).json()

    assert len(one["jobs"]) == 1
    assert one["next_cursor"] is not None
    assert len(most["jobs"]) == 3
    assert most["next_cursor"] is None


async def test_get_job_returns_the_status_body(client: httpx.AsyncClient) -> None:
    queue = new_queue()
    [job_id] = await create_jobs(client, queue, 1, args={"a": 1}, priority=7)

    by_id = await client.get(f"{JOBS}/{job_id}")
    status = await client.get(f"{JOBS}/{job_id}/status")

    assert by_id.status_code == 200
    assert by_id.json() == status.json()
    assert by_id.json()["args"] == {"a": 1}
    assert by_id.json()["priority"] == 7


@pytest.mark.parametrize("suffix", ["", "/events", "/retry"])
async def test_job_endpoints_unknown_is_404_and_bad_id_400(
    client: httpx.AsyncClient, suffix: str
) -> None:
    send = client.post if suffix == "/retry" else client.get
    unknown = uuid.uuid4()

    missing = await send(f"{JOBS}/{unknown}{suffix}")
    bad = await send(f"{JOBS}/not-a-uuid{suffix}")

    assert missing.status_code == 404
    assert str(unknown) in missing.json()["detail"]
    assert bad.status_code == 400
    assert "job_id" in bad.json()["detail"]


async def test_job_events_oldest_first_with_details(client: httpx.AsyncClient) -> None:
    queue = new_queue()
    [job_id] = await create_jobs(client, queue, 1)
    assert (await client.post(f"{JOBS}/{job_id}/cancel")).status_code == 200

    response = await client.get(f"{JOBS}/{job_id}/events")

    assert response.status_code == 200
    data = response.json()
    assert data["job_id"] == job_id
    assert data["next_after"] is None
    events = data["events"]
    assert [(e["event"], e["attempt"]) for e in events] == [("queued", 0), ("canceled", 0)]
    assert events[0]["details"] == {"queue": queue, "task": "noop"}
    assert events[1]["details"] is None
    assert set(events[0]) == {"id", "event", "attempt", "at", "details"}
    assert events[0]["id"] < events[1]["id"]
    assert datetime.fromisoformat(events[0]["at"]) <= datetime.fromisoformat(events[1]["at"])


async def test_job_events_page_with_after_and_limit(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    [job_id] = await create_jobs(client, new_queue(), 1)
    await api_db.executemany(
        "INSERT INTO dl_job_events (job_id, event, attempt, details)"
        " VALUES ($1, 'lock_busy', 0, $2::jsonb)",
        [(uuid.UUID(job_id), f'{{"n": {n}}}') for n in range(5)],
    )

    first = (await client.get(f"{JOBS}/{job_id}/events", params={"limit": 4})).json()
    second = (
        await client.get(
            f"{JOBS}/{job_id}/events", params={"limit": 4, "after": first["next_after"]}
        )
    ).json()
    whole = (await client.get(f"{JOBS}/{job_id}/events")).json()

    assert len(first["events"]) == 4
    assert first["next_after"] == first["events"][-1]["id"]
    assert [e["event"] for e in second["events"]] == ["lock_busy", "lock_busy"]
    assert second["next_after"] is None
    assert first["events"] + second["events"] == whole["events"]
    bad = await client.get(f"{JOBS}/{job_id}/events", params={"limit": 0})
    assert bad.status_code == 400
    assert "limit" in bad.json()["detail"]


async def test_list_jobs_concurrent_pages_answer(client: httpx.AsyncClient) -> None:
    queue = new_queue()
    await create_jobs(client, queue, 5)

    responses = await asyncio.gather(
        *(client.get(JOBS, params={"queue": queue, "limit": 2}) for _ in range(20))
    )

    assert {r.status_code for r in responses} == {200}
    assert len({tuple(j["job_id"] for j in r.json()["jobs"]) for r in responses}) == 1


async def test_openapi_documents_job_endpoints_with_examples(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]

    listing = paths["/api/v1/jobs"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert names >= {
        "status",
        "queue",
        "task",
        "lock_key",
        "partition_key",
        "producer",
        "consumer_group",
        "created_after",
        "created_before",
        "finished_after",
        "finished_before",
        "limit",
        "cursor",
    }
    assert all(p.get("examples") for p in listing["parameters"])
    assert listing["responses"]["200"]["content"]["application/json"]["examples"]
    assert "400" in listing["responses"]
    for path, method, codes in [
        ("/api/v1/jobs/{job_id}", "get", {"200", "400", "404"}),
        ("/api/v1/jobs/{job_id}/events", "get", {"200", "400", "404"}),
        ("/api/v1/jobs/{job_id}/retry", "post", {"200", "400", "404", "409"}),
    ]:
        operation = paths[path][method]
        assert set(operation["responses"]) >= codes, path
        for code in codes:
            content = operation["responses"][code]["content"]["application/json"]
            assert content["examples"], (path, code)
    retry = paths["/api/v1/jobs/{job_id}/retry"]["post"]
    assert "max_attempts" in retry["description"]
