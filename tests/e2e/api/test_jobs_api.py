"""The /api/v1/jobs endpoints of a running server: trigger, status, cancel and input validation."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

TRIGGER = "/api/v1/jobs/trigger"
JSON = {"content-type": "application/json"}


def body(**overrides: object) -> dict[str, Any]:
    """A valid trigger body."""
    values: dict[str, Any] = {"queue": "etl.api", "task": "noop", "lock_key": "customer-1"}
    values.update(overrides)
    return values


# No worker runs in these API modules: every trigger answer warns that nobody serves the queue.
def unserved(queue: str) -> str:
    """The warning a trigger's answer carries for a queue no live worker serves."""
    return f"no live worker serves queue {queue!r}; the job waits until one does"


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


async def trigger(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post(TRIGGER, json=body(**overrides))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def row_counts(api_db: asyncpg.Connection) -> tuple[int, int, int]:
    return (
        int(await api_db.fetchval("SELECT count(*) FROM dl_jobs")),
        int(await api_db.fetchval("SELECT count(*) FROM dl_job_events")),
        int(await api_db.fetchval("SELECT count(*) FROM pgqueuer")),
    )


async def test_trigger_returns_new_queued_job(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    response = await client.post(TRIGGER, json=body())

    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"job_id", "status", "created", "warnings"}
    assert data["warnings"] == [unserved("etl.api")]
    assert data["status"] == "queued"
    assert data["created"] is True
    job_id = uuid.UUID(data["job_id"])
    row = await api_db.fetchrow("SELECT status, pgq_job_id FROM dl_jobs WHERE job_id = $1", job_id)
    assert row["status"] == "queued"
    payload = await api_db.fetchval("SELECT payload FROM pgqueuer WHERE id = $1", row["pgq_job_id"])
    assert bytes(payload) == job_id.bytes


async def test_status_returns_progress_timings_and_stored_fields(
    client: httpx.AsyncClient,
) -> None:
    key = new_key()
    available_at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    created = await trigger(
        client,
        args={"day": "2026-11-24", "tables": ["a", "b"], "limit": 10},
        idempotency_key=key,
        partition_key="eu-1",
        priority=5,
        available_at=available_at.isoformat(),
        max_attempts=3,
        lease_ttl_sec=120,
        producer="scheduler",
        consumer_group="nightly",
    )

    response = await client.get(f"/api/v1/jobs/{created['job_id']}/status")

    assert response.status_code == 200
    data = response.json()
    assert data["job_id"] == created["job_id"]
    assert data["status"] == "queued"
    assert data["attempt"] == 0
    for field in ("started_at", "finished_at", "heartbeat_at", "error", "progress"):
        assert field in data
        assert data[field] is None
    assert data["cancel_requested"] is False
    assert data["queue"] == "etl.api"
    assert data["task"] == "noop"
    assert data["args"] == {"day": "2026-11-24", "tables": ["a", "b"], "limit": 10}
    assert data["lock_key"] == "customer-1"
    assert data["idempotency_key"] == key
    assert data["partition_key"] == "eu-1"
    assert data["priority"] == 5
    assert datetime.fromisoformat(data["available_at"]) == available_at
    assert data["max_attempts"] == 3
    assert data["lease_ttl_sec"] == 120
    assert data["producer"] == "scheduler"
    assert data["consumer_group"] == "nightly"
    assert datetime.fromisoformat(data["created_at"]) > datetime.now(UTC) - timedelta(minutes=5)


async def test_status_defaults_for_optional_fields(client: httpx.AsyncClient) -> None:
    created = await trigger(client)

    data = (await client.get(f"/api/v1/jobs/{created['job_id']}/status")).json()

    assert data["args"] == {}
    assert data["priority"] == 100
    assert data["max_attempts"] == 5
    assert data["lease_ttl_sec"] == 60
    assert data["idempotency_key"] is None
    assert abs(datetime.fromisoformat(data["available_at"]) - datetime.now(UTC)) < timedelta(
        minutes=5
    )


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2030-01-01T00:00:00+02:00", datetime(2029, 12, 31, 22, 0, tzinfo=UTC)),
        ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, 0, 0, tzinfo=UTC)),
        ("2030-01-01T00:00:00", datetime(2030, 1, 1, 0, 0, tzinfo=UTC)),
    ],
    ids=["offset", "utc", "no-zone-is-utc"],
)
async def test_trigger_available_at_with_or_without_zone(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, sent: str, stored: datetime
) -> None:
    created = await trigger(client, available_at=sent)

    data = (await client.get(f"/api/v1/jobs/{created['job_id']}/status")).json()
    assert datetime.fromisoformat(data["available_at"]) == stored
    execute_after = await api_db.fetchval(
        "SELECT q.execute_after FROM pgqueuer q JOIN dl_jobs j ON j.pgq_job_id = q.id"
        " WHERE j.job_id = $1",
        uuid.UUID(created["job_id"]),
    )
    assert abs(execute_after - stored) < timedelta(seconds=5)


async def test_trigger_same_idempotency_key_returns_same_job_even_after_cancel(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = new_key()
    first = await trigger(client, idempotency_key=key)
    # The same request (a different one is a 409: test_idempotency_api.py).
    second = await trigger(client, idempotency_key=key)

    assert first["created"] is True
    assert second == {
        "job_id": first["job_id"],
        "status": "queued",
        "created": False,
        "warnings": [unserved("etl.api")],
    }

    canceled = await client.post(f"/api/v1/jobs/{first['job_id']}/cancel")
    assert canceled.status_code == 200
    third = await trigger(client, idempotency_key=key)

    assert third == {
        "job_id": first["job_id"],
        "status": "canceled",
        "created": False,
        "warnings": [unserved("etl.api")],
    }
    assert (
        await api_db.fetchval("SELECT count(*) FROM dl_jobs WHERE idempotency_key = $1", key) == 1
    )
    status = (await client.get(f"/api/v1/jobs/{first['job_id']}/status")).json()
    assert status["args"] == {}


async def test_trigger_concurrent_same_idempotency_key_creates_one_job(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    key = new_key()
    before = await row_counts(api_db)

    responses = await asyncio.gather(
        *(client.post(TRIGGER, json=body(idempotency_key=key)) for _ in range(50))
    )

    assert [r.status_code for r in responses] == [200] * 50
    results = [r.json() for r in responses]
    assert len({r["job_id"] for r in results}) == 1
    assert sum(r["created"] for r in results) == 1
    rows = await api_db.fetch("SELECT job_id FROM dl_jobs WHERE idempotency_key = $1", key)
    assert [str(r["job_id"]) for r in rows] == [results[0]["job_id"]]
    after = await row_counts(api_db)
    assert after == (before[0] + 1, before[1] + 1, before[2] + 1)


async def test_cancel_queued_job_cancels_and_withdraws_dispatch(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    created = await trigger(client)
    job_id = uuid.UUID(created["job_id"])
    pgq_job_id = await api_db.fetchval("SELECT pgq_job_id FROM dl_jobs WHERE job_id = $1", job_id)
    assert await api_db.fetchval("SELECT count(*) FROM pgqueuer WHERE id = $1", pgq_job_id) == 1

    response = await client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200
    data = response.json()
    assert data["job_id"] == str(job_id)
    assert data["status"] == "canceled"
    assert data["finished_at"] is not None
    assert await api_db.fetchval("SELECT count(*) FROM pgqueuer WHERE id = $1", pgq_job_id) == 0
    events = await api_db.fetch(
        "SELECT event FROM dl_job_events WHERE job_id = $1 ORDER BY id", job_id
    )
    assert [e["event"] for e in events] == ["queued", "canceled"]
    status = (await client.get(f"/api/v1/jobs/{job_id}/status")).json()
    assert status["status"] == "canceled"

    again = await client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert again.status_code == 409
    assert again.json()["job_status"] == "canceled"
    assert again.json()["detail"]


async def test_cancel_running_job_requests_cancel(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    created = await trigger(client)
    job_id = uuid.UUID(created["job_id"])
    # No worker runs here: put the job in the state a worker's start would leave it in.
    await api_db.execute(
        "UPDATE dl_jobs SET status = 'running', attempt = 1, started_at = now(),"
        " heartbeat_at = now(), lease_expires_at = now() + interval '60 seconds',"
        " worker_id = 'test-worker' WHERE job_id = $1",
        job_id,
    )

    response = await client.post(f"/api/v1/jobs/{job_id}/cancel")

    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "running"
    assert data["cancel_requested"] is True
    assert data["finished_at"] is None
    row = await api_db.fetchrow(
        "SELECT status, cancel_requested FROM dl_jobs WHERE job_id = $1", job_id
    )
    assert (row["status"], row["cancel_requested"]) == ("running", True)
    event = await api_db.fetchrow(
        "SELECT event, attempt FROM dl_job_events WHERE job_id = $1 ORDER BY id DESC LIMIT 1",
        job_id,
    )
    assert (event["event"], event["attempt"]) == ("cancel_requested", 1)


@pytest.mark.parametrize("final_status", ["succeeded", "failed", "lost"])
async def test_cancel_finished_job_is_conflict(
    client: httpx.AsyncClient, api_db: asyncpg.Connection, final_status: str
) -> None:
    created = await trigger(client)
    await api_db.execute(
        "UPDATE dl_jobs SET status = $2, attempt = 1, finished_at = now() WHERE job_id = $1",
        uuid.UUID(created["job_id"]),
        final_status,
    )

    response = await client.post(f"/api/v1/jobs/{created['job_id']}/cancel")

    assert response.status_code == 409
    assert response.json()["job_status"] == final_status


async def test_status_and_cancel_unknown_job_are_not_found(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()

    status = await client.get(f"/api/v1/jobs/{missing}/status")
    cancel = await client.post(f"/api/v1/jobs/{missing}/cancel")

    assert status.status_code == 404
    assert cancel.status_code == 404
    assert str(missing) in status.json()["detail"]


@pytest.mark.parametrize("raw_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_status_and_cancel_non_uuid_id_are_bad_request(
    client: httpx.AsyncClient, raw_id: str
) -> None:
    status = await client.get(f"/api/v1/jobs/{raw_id}/status")
    cancel = await client.post(f"/api/v1/jobs/{raw_id}/cancel")

    assert status.status_code == 400
    assert cancel.status_code == 400
    assert "UUID" in status.json()["detail"]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


def _raw(text: bytes) -> dict[str, Any]:
    return {"content": text, "headers": JSON}


# (request keyword arguments for httpx, a word the error's detail must name or None)
INVALID_TRIGGERS: dict[str, tuple[dict[str, Any], str | None]] = {
    "malformed-json": (_raw(b'{"queue": "etl.api", '), None),
    "json-array": (_raw(json.dumps([body()]).encode()), None),
    "json-null": (_raw(b"null"), None),
    "empty-body": (_raw(b""), None),
    "nan-in-args": (_raw(b'{"queue":"q","task":"noop","lock_key":"k","args":{"x":NaN}}'), None),
    "invalid-utf8": (_raw(b'{"queue":"q","task":"noop","lock_key":"\xff\xfe"}'), None),
    "queue-int": ({"json": body(queue=5)}, "queue"),
    "task-int": ({"json": body(task=1)}, "task"),
    "priority-string": ({"json": body(priority="high")}, "priority"),
    "priority-float": ({"json": body(priority=1.5)}, "priority"),
    "missing-queue": ({"json": {"task": "noop", "lock_key": "k"}}, "queue"),
    "missing-task": ({"json": {"queue": "q", "lock_key": "k"}}, "task"),
    "missing-lock_key": ({"json": {"queue": "q", "task": "noop"}}, "lock_key"),
    "blank-queue": ({"json": body(queue="  ")}, "queue"),
    "blank-task": ({"json": body(task="  ")}, "task"),
    "blank-lock_key": ({"json": body(lock_key="  ")}, "lock_key"),
    "empty-lock_key": ({"json": body(lock_key="")}, "lock_key"),
    "queue-with-space": ({"json": body(queue="etl default")}, "queue"),
    "queue-too-long": ({"json": body(queue="q" * 101)}, "queue"),
    "lock_key-too-long": ({"json": body(lock_key="k" * 501)}, "lock_key"),
    "args-list": ({"json": body(args=[1, 2])}, "args"),
    "args-string": ({"json": body(args="x")}, "args"),
    "args-null": ({"json": body(args=None)}, "args"),
    "priority-negative": ({"json": body(priority=-1)}, "priority"),
    "priority-above-max": ({"json": body(priority=10_001)}, "priority"),
    "priority-huge": ({"json": body(priority=10**30)}, "priority"),
    "max_attempts-zero": ({"json": body(max_attempts=0)}, "max_attempts"),
    "max_attempts-huge": ({"json": body(max_attempts=10**9)}, "max_attempts"),
    "lease_ttl_sec-zero": ({"json": body(lease_ttl_sec=0)}, "lease_ttl_sec"),
    "lease_ttl_sec-negative": ({"json": body(lease_ttl_sec=-5)}, "lease_ttl_sec"),
    "available_at-words": ({"json": body(available_at="tomorrow")}, "available_at"),
    "available_at-bad-month": ({"json": body(available_at="2026-13-45T00:00:00Z")}, "available_at"),
    # The extremes asyncpg turns into -infinity/infinity on the way into PostgreSQL.
    "available_at-min-utc": ({"json": body(available_at="0001-01-01T00:00:00Z")}, "available_at"),
    "available_at-min-naive": ({"json": body(available_at="0001-01-01T00:00:00")}, "available_at"),
    "available_at-max-utc": (
        {"json": body(available_at="9999-12-31T23:59:59.999999Z")},
        "available_at",
    ),
    "unknown-task": ({"json": body(task="no.such.task")}, "task"),
    # noop is registered in production: its steps and sleeps are bounded (docs/pipelines.md).
    "noop-steps-huge": ({"json": body(args={"steps": 1_000_000_000})}, "$.steps"),
    "noop-sleep-too-long": ({"json": body(args={"steps": 1, "sleep": 3_601})}, "$.sleep"),
    "noop-sleepN-too-long": ({"json": body(args={"sleep1": 0, "sleep2": 86_401})}, "$.sleep2"),
    "unknown-field": ({"json": body(colour="red")}, "colour"),
    "nul-in-args-value": ({"json": body(args={"a": "x\x00y"})}, "args"),
    "nul-in-args-key": ({"json": body(args={"a\x00": "y"})}, "args"),
    "nul-in-lock_key": ({"json": body(lock_key="a\x00b")}, "lock_key"),
    "nul-in-idempotency_key": ({"json": body(idempotency_key="a\x00b")}, "idempotency_key"),
    # The service's own namespace: a schedule's fire-time key and producer.
    "idempotency_key-reserved": (
        {"json": body(idempotency_key="dl:schedule:0f9c4c2e:2026-12-03T00:00:00+00:00")},
        "idempotency_key",
    ),
    "producer-reserved": ({"json": body(producer="dl:schedule:nightly")}, "producer"),
    "args-nested-200-dicts": ({"json": body(args=_nested(200))}, "args"),
    "args-nested-200-lists": (
        {"json": body(args={"a": json.loads("[" * 200 + "]" * 200)})},
        "args",
    ),
    "content-type-text": (
        {"content": json.dumps(body()).encode(), "headers": {"content-type": "text/plain"}},
        None,
    ),
    "content-type-form": (
        {
            "content": b"queue=q&task=noop&lock_key=k",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        None,
    ),
}


# A JSON body under another Content-Type is a 415. Every other mistake here is a 400, a body
# that is not JSON included whatever its Content-Type (it is read before the type is checked).
UNSUPPORTED_MEDIA_TYPE = {"content-type-text"}


@pytest.mark.parametrize(
    ("request_kwargs", "field", "status"),
    [
        (*case, 415 if name in UNSUPPORTED_MEDIA_TYPE else 400)
        for name, case in INVALID_TRIGGERS.items()
    ],
    ids=INVALID_TRIGGERS,
)
async def test_trigger_invalid_request_is_rejected_without_writing(
    client: httpx.AsyncClient,
    api_db: asyncpg.Connection,
    request_kwargs: dict[str, Any],
    field: str | None,
    status: int,
) -> None:
    before = await row_counts(api_db)

    response = await client.post(TRIGGER, **request_kwargs)

    assert response.status_code == status, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert detail
    if field is not None:
        assert field in detail
    assert await row_counts(api_db) == before


async def test_trigger_body_over_one_mib_is_too_large(
    client: httpx.AsyncClient, api_db: asyncpg.Connection
) -> None:
    before = await row_counts(api_db)

    response = await client.post(TRIGGER, json=body(args={"blob": "x" * (1024 * 1024 + 1)}))

    assert response.status_code == 413
    assert response.json()["detail"]
    assert await row_counts(api_db) == before


async def test_trigger_body_just_under_limit_is_accepted(client: httpx.AsyncClient) -> None:
    created = await trigger(client, args={"blob": "x" * (1024 * 1024 - 1024)})

    assert created["created"] is True
