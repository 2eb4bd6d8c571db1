"""Built-in `http.callback` through real `pgq run` workers against a real local HTTP server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.devserver.embedded_postgres import free_port
from app.domain.errors import InvalidJobError
from tests.support.api_servers import start_api_server, stop_api_server
from tests.support.jobs_db import JobsDb
from tests.support.local_servers import (
    LOOPBACK_CALLBACKS,
    RecordingHttpServer,
    Reply,
    http_server,
    where_secret_appears,
)
from tests.support.workers import WorkerFleet

TIMEOUT = 30


@pytest.fixture
def server() -> Iterator[RecordingHttpServer]:
    """A recording HTTP server for one test."""
    with http_server() as server:
        yield server


async def test_http_callback_posts_json_object_with_headers(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    await fleet.start_ready(env=LOOPBACK_CALLBACKS)
    data = {"order": 42, "items": ["a", "ü"], "ok": True}
    job_id = await jobs_db.enqueue(
        "http.callback",
        {"url": server.url("/hook?x=1"), "data": data, "headers": {"X-Trace": "t-1"}},
    )

    done = await jobs_db.wait_status(
        job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert (done["attempt"], done["result"], done["error"]) == (1, {"status_code": 200}, None)
    [request] = server.requests_to("/hook?x=1")
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-trace"] == "t-1"
    assert "traceparent" not in request.headers, "tracing is off: no trace context is sent"
    assert json.loads(request.body) == data


async def test_http_callback_sends_string_raw_with_its_method(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    await fleet.start_ready(env=LOOPBACK_CALLBACKS)
    plain = await jobs_db.enqueue(
        "http.callback", {"url": server.url("/plain"), "method": "PUT", "data": "a,b\n1,2"}
    )
    csv = await jobs_db.enqueue(
        "http.callback",
        {"url": server.url("/csv"), "data": "a;b", "headers": {"Content-Type": "text/csv"}},
    )
    for job_id in (plain, csv):
        await jobs_db.wait_status(
            job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )

    [put] = server.requests_to("/plain")
    assert (put.method, put.body) == ("PUT", b"a,b\n1,2")
    assert put.headers["content-type"] == "text/plain; charset=utf-8"
    [post] = server.requests_to("/csv")
    assert (post.body, post.headers["content-type"]) == (b"a;b", "text/csv")


async def test_http_callback_credentials_reach_the_server_and_nowhere_else(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    token = f"Bearer tok-{uuid.uuid4().hex}"
    headers = {"Authorization": token, "X-Api-Key": "key-" + token[-12:]}
    credentials = {"partner": {"headers": headers, "urls": [server.url("/")]}}
    worker = await fleet.start_ready(
        env={**LOOPBACK_CALLBACKS, "HTTP_CALLBACK_CREDENTIALS_JSON": json.dumps(credentials)}
    )
    server.script("/echo", Reply(403, f"forbidden for {token}"))  # a server that echoes it back
    ok = await jobs_db.enqueue(
        "http.callback",
        {
            "url": server.url("/ok"),
            "data": {"a": 1},
            "credentials": "partner",
            "headers": {"Authorization": "job's own, overridden"},
        },
    )
    echoed = await jobs_db.enqueue(
        "http.callback", {"url": server.url("/echo"), "credentials": "partner"}
    )
    unknown = await jobs_db.enqueue(
        "http.callback", {"url": server.url("/ok"), "credentials": "nobody"}, max_attempts=3
    )

    await jobs_db.wait_status(ok, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics)
    failed = await jobs_db.wait_status(
        echoed, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )
    missing = await jobs_db.wait_status(
        unknown, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    [request] = server.requests_to("/ok")
    assert request.headers["authorization"] == token
    assert request.headers["x-api-key"] == "key-" + token[-12:]
    assert "HTTP 403: forbidden for ***" in failed["error"]
    assert missing["attempt"] == 1
    assert "unknown credentials 'nobody'" in missing["error"]
    assert len(server.requests_to("/ok")) == 1, "an unknown credentials name sends nothing"
    logs = {"worker": worker.log()}
    for secret in (token, token.removeprefix("Bearer "), token[-12:]):
        assert await where_secret_appears(jobs_db, secret, logs) == []


async def test_http_callback_5xx_is_retried_then_succeeds(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    await fleet.start_ready(env=LOOPBACK_CALLBACKS)
    server.script("/flaky", Reply(503, "down for maintenance"), Reply(200))
    job_id = await jobs_db.enqueue("http.callback", {"url": server.url("/flaky")}, max_attempts=3)

    done = await jobs_db.wait_status(
        job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert done["attempt"] == 2
    assert done["error"] is None
    events = await jobs_db.events(job_id)
    assert [e["event"] for e in events] == [
        "queued",
        "started",
        "retry_scheduled",
        "started",
        "succeeded",
    ]
    retry = events[2]["details"]["error"]
    assert retry.startswith("CallbackError: POST http://127.0.0.1:")
    assert retry.endswith("/flaky answered HTTP 503: down for maintenance")
    assert len(server.requests_to("/flaky")) == 2


async def test_http_callback_4xx_fails_at_once_with_a_bounded_body(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    await fleet.start_ready(env=LOOPBACK_CALLBACKS)
    server.script("/missing", Reply(404, "n" * 5000))
    job_id = await jobs_db.enqueue("http.callback", {"url": server.url("/missing")}, max_attempts=5)

    failed = await jobs_db.wait_status(
        job_id, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert failed["attempt"] == 1
    assert failed["error"].startswith("PermanentError: POST ")
    assert "answered HTTP 404: " + "n" * 500 in failed["error"]
    assert "n" * 501 not in failed["error"]
    assert await jobs_db.event_names(job_id) == ["queued", "started", "failed"]
    assert len(server.requests_to("/missing")) == 1


async def test_http_callback_timeout_is_retried(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    await fleet.start_ready(env=LOOPBACK_CALLBACKS)
    server.script("/slow", Reply(200, delay_sec=10), Reply(200))
    job_id = await jobs_db.enqueue(
        "http.callback", {"url": server.url("/slow"), "timeout_sec": 0.5}, max_attempts=3
    )

    done = await jobs_db.wait_status(
        job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert done["attempt"] == 2
    [retry] = [e for e in await jobs_db.events(job_id) if e["event"] == "retry_scheduled"]
    assert retry["details"]["error"].endswith("/slow: no answer within 0.5s")
    # Only the attempt's own deadline stopped it: it gave up well before the server answered.
    assert (done["finished_at"] - done["started_at"]).total_seconds() < 5


async def test_http_callback_connection_refused_is_retried_until_max_attempts(
    jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready(env=LOOPBACK_CALLBACKS)
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    job_id = await jobs_db.enqueue("http.callback", {"url": url}, max_attempts=2)

    failed = await jobs_db.wait_status(
        job_id, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert failed["attempt"] == 2
    assert failed["error"].startswith(f"CallbackError: POST {url}: request failed: ConnectError")
    assert await jobs_db.event_names(job_id) == [
        "queued",
        "started",
        "retry_scheduled",
        "started",
        "failed",
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"url": "ftp://example.com/x"}, "$.url"),
        ({"url": "http://example.com", "verb": "POST"}, "unknown field `verb`"),
    ],
)
async def test_http_callback_bad_args_are_rejected_before_the_job_exists(
    jobs_db: JobsDb, args: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidJobError, match=r"invalid args for task 'http\.callback'") as caught:
        await jobs_db.enqueue("http.callback", args)

    assert fragment in caught.value.message
    assert await jobs_db.scalar("SELECT count(*) FROM dl_jobs") == 0


async def test_http_callback_trigger_over_http_checks_args(
    database_dsn: str,
    jobs_db: JobsDb,
    fleet: WorkerFleet,
    server: RecordingHttpServer,
    tmp_path: Path,
) -> None:
    api = await start_api_server(database_dsn, tmp_path / "api.log", LOOPBACK_CALLBACKS)
    try:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
            body = {"queue": "etl.default", "task": "http.callback", "lock_key": "k"}
            bad = await client.post(
                "/api/v1/jobs/trigger", json={**body, "args": {"url": "ftp://x/"}}
            )
            good = await client.post(
                "/api/v1/jobs/trigger", json={**body, "args": {"url": server.url("/api")}}
            )
    finally:
        stop_api_server(api)

    assert bad.status_code == 400, bad.text
    assert "$.url" in bad.json()["detail"]
    assert good.status_code == 200, good.text
    await fleet.start_ready(env=LOOPBACK_CALLBACKS)
    job_id = uuid.UUID(good.json()["job_id"])
    await jobs_db.wait_status(job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics)
    assert len(server.requests_to("/api")) == 1
