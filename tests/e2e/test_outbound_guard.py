"""The outbound guard through a real API process and real workers (DESIGN.md invariant 10).

A client's trigger naming a destination the settings do not allow answers 400 and creates
nothing; a job that reaches a worker anyway (enqueued in-app, triggered through an API
with other settings, or a host name that resolves elsewhere by then) is refused by the
worker before it connects. Either way the local server standing in for the target
receives nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.devserver.embedded_postgres import free_port
from tests.support.api_servers import ApiServer, start_api_server, stop_api_server
from tests.support.jobs_db import JobsDb
from tests.support.local_servers import (
    LOOPBACK_CALLBACKS,
    RecordingHttpServer,
    Reply,
    http_server,
    smtp_server,
)
from tests.support.workers import WorkerFleet

TIMEOUT = 30
ALLOW_HINT = "; allow it with HTTP_CALLBACK_ALLOWED_NETWORKS or HTTP_CALLBACK_ALLOWED_HOSTS"


@pytest.fixture
def server() -> Iterator[RecordingHttpServer]:
    """A recording HTTP server for one test, answering with a body worth stealing."""
    with http_server() as server:
        server.script("/", Reply(404, "internal-secret-body"))
        yield server


async def _trigger(api: ApiServer, task: str, args: dict[str, Any]) -> httpx.Response:
    """POST /api/v1/jobs/trigger for `task` with `args`."""
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
        body = {"queue": "etl.default", "task": task, "lock_key": "k", "args": args}
        return await client.post("/api/v1/jobs/trigger", json=body)


async def test_trigger_refuses_internal_callback_urls_naming_the_reason(
    database_dsn: str, jobs_db: JobsDb, server: RecordingHttpServer, tmp_path: Path
) -> None:
    port = server.port
    cases = {
        f"http://127.0.0.1:{port}/": "url host 127.0.0.1 is a loopback address",
        f"http://2130706433:{port}/": "url host 2130706433 resolves to 127.0.0.1, a loopback",
        f"http://0x7f.1:{port}/": "url host 0x7f.1 resolves to 127.0.0.1, a loopback address",
        f"http://127.1:{port}/": "url host 127.1 resolves to 127.0.0.1, a loopback address",
        f"http://[::ffff:127.0.0.1]:{port}/": "url host ::ffff:127.0.0.1 is the IPv4-mapped form",
        f"http://[::1]:{port}/": "url host ::1 is a loopback address",
        f"http://localhost:{port}/": "url host localhost resolves to ",
        "http://169.254.169.254/latest/meta-data/": "url host 169.254.169.254 is a link-local",
        "http://10.0.0.1/": "url host 10.0.0.1 is a private address",
        "http://[fd00::1]/": "url host fd00::1 is a unique-local address",
    }
    job = {"queue": "etl.default", "task": "http.callback", "lock_key": "k"}
    metadata = {"url": "http://169.254.169.254/latest/meta-data/"}
    api = await start_api_server(database_dsn, tmp_path / "api.log")
    try:
        answers = {url: await _trigger(api, "http.callback", {"url": url}) for url in cases}
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
            bulk = await client.post(
                "/api/v1/jobs/trigger/bulk",
                json={
                    "jobs": [{**job, "args": {"url": "http://8.8.8.8/"}}, {**job, "args": metadata}]
                },
            )
            schedule = await client.post(
                "/api/v1/schedules",
                json={"name": "steal", "cron": "* * * * *", **job, "args": metadata},
            )
            schedules = (await client.get("/api/v1/schedules")).json()["schedules"]
    finally:
        stop_api_server(api)

    for url, reason in cases.items():
        answer = answers[url]
        assert answer.status_code == 400, (url, answer.text)
        detail = answer.json()["detail"]
        assert detail.startswith(f"args of task 'http.callback': {reason}"), (url, detail)
        assert detail.endswith(ALLOW_HINT), (url, detail)
    link_local = "url host 169.254.169.254 is a link-local address"
    assert bulk.status_code == 400, bulk.text
    assert bulk.json()["detail"].startswith(f"jobs[1]: args of task 'http.callback': {link_local}")
    assert schedule.status_code == 400, schedule.text
    assert schedule.json()["detail"].startswith(
        f"job template: args of task 'http.callback': {link_local}"
    )
    assert schedules == []
    assert await jobs_db.scalar("SELECT count(*) FROM dl_jobs") == 0
    assert server.requests == []


async def test_worker_refuses_a_callback_the_trigger_did_not_check_before_connecting(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    await fleet.start_ready()  # no HTTP_CALLBACK_ALLOWED_*: loopback is refused
    closed_port = free_port()
    urls = {
        "open": f"http://127.0.0.1:{server.port}/",
        "closed": f"http://127.0.0.1:{closed_port}/",
        "decimal": f"http://2130706433:{server.port}/",
    }
    # In-app enqueue does not resolve hosts: only the worker's guard stands in the way.
    jobs = {
        name: await jobs_db.enqueue("http.callback", {"url": url}, max_attempts=3)
        for name, url in urls.items()
    }
    failed = {
        name: await jobs_db.wait_status(
            job_id, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )
        for name, job_id in jobs.items()
    }

    assert server.requests == [], "the worker connected to a refused address"
    for row in failed.values():
        assert row["attempt"] == 1, "a refused destination is not retried"
        assert "internal-secret-body" not in row["error"]
    refusal = "refused before connecting: url host 127.0.0.1 is a loopback address" + ALLOW_HINT
    assert failed["open"]["error"] == f"DestinationRefusedError: POST {urls['open']}: {refusal}"
    # An open port and a closed one read alike: nothing tells them apart but the URL.
    closed = failed["closed"]["error"].replace(str(closed_port), str(server.port))
    assert closed == failed["open"]["error"]
    assert failed["decimal"]["error"] == (
        f"DestinationRefusedError: POST {urls['decimal']}: refused before connecting: url host"
        f" 2130706433 resolves to 127.0.0.1, a loopback address{ALLOW_HINT}"
    )


async def test_worker_reaches_an_allowed_host_name_keeping_it_in_the_host_header(
    jobs_db: JobsDb, fleet: WorkerFleet, server: RecordingHttpServer
) -> None:
    await fleet.start_ready(env={"HTTP_CALLBACK_ALLOWED_HOSTS": "localhost"})
    url = f"http://localhost:{server.port}/named"
    job_id = await jobs_db.enqueue("http.callback", {"url": url})

    done = await jobs_db.wait_status(
        job_id, "succeeded", timeout=TIMEOUT, diagnostics=fleet.diagnostics
    )

    assert done["error"] is None
    [request] = server.requests_to("/named")
    # The guard connected to the address it resolved; the request still names the host.
    assert request.headers["host"] == f"localhost:{server.port}"


async def test_credentials_go_only_to_their_bound_urls(
    database_dsn: str,
    jobs_db: JobsDb,
    fleet: WorkerFleet,
    server: RecordingHttpServer,
    tmp_path: Path,
) -> None:
    secret = f"Bearer cb-{uuid.uuid4().hex}"
    with http_server() as other:
        credentials = {
            "partner": {"headers": {"Authorization": secret}, "urls": [server.url("/hooks/")]}
        }
        env = {**LOOPBACK_CALLBACKS, "HTTP_CALLBACK_CREDENTIALS_JSON": json.dumps(credentials)}
        api = await start_api_server(database_dsn, tmp_path / "api.log", env)
        try:
            elsewhere = await _trigger(
                api, "http.callback", {"url": other.url("/hooks/"), "credentials": "partner"}
            )
            outside = await _trigger(
                api, "http.callback", {"url": server.url("/admin"), "credentials": "partner"}
            )
            bound = await _trigger(
                api, "http.callback", {"url": server.url("/hooks/a"), "credentials": "partner"}
            )
        finally:
            stop_api_server(api)
        await fleet.start_ready(env=env)
        # Enqueued in-app, the worker alone checks the binding.
        sneaked = await jobs_db.enqueue(
            "http.callback", {"url": other.url("/hooks/"), "credentials": "partner"}
        )
        refused = await jobs_db.wait_status(
            sneaked, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )
        sent = await jobs_db.wait_status(
            uuid.UUID(bound.json()["job_id"]),
            "succeeded",
            timeout=TIMEOUT,
            diagnostics=fleet.diagnostics,
        )

        assert other.requests == [], "the secret went to a URL it is not bound to"
    binding = (
        "credentials 'partner' may not be sent to this url: it is under none of the URL"
        " prefixes HTTP_CALLBACK_CREDENTIALS_JSON binds them to"
    )
    for answer in (elsewhere, outside):
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"] == f"args of task 'http.callback': {binding}"
    assert bound.status_code == 200, bound.text
    assert sent["error"] is None
    assert [r.headers["authorization"] for r in server.requests] == [secret]
    assert refused["attempt"] == 1
    assert refused["error"] == f"DestinationRefusedError: {binding}"


async def test_email_and_rabbitmq_destinations_are_allow_listed(
    database_dsn: str, jobs_db: JobsDb, fleet: WorkerFleet, tmp_path: Path
) -> None:
    with smtp_server() as smtp:
        env = {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_SECURITY": "none",
            "SMTP_FROM": "dl@example.com",
            "EMAIL_ALLOWED_RECIPIENT_DOMAINS": "example.com",
            # Nothing listens: a refusal must come before any connection to the broker.
            "RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
            "RABBITMQ_ALLOWED_EXCHANGES": "orders",
        }
        api = await start_api_server(database_dsn, tmp_path / "api.log", env)
        try:
            mail = await _trigger(
                api, "email.send", {"to": ["a@example.com"], "bcc": ["x@evil.org"], "text": "t"}
            )
            publish = await _trigger(
                api, "rabbitmq.publish", {"exchange": "amq.topic", "routing_key": "k", "body": "b"}
            )
            default = await _trigger(api, "rabbitmq.publish", {"routing_key": "q", "body": "b"})
        finally:
            stop_api_server(api)
        await fleet.start_ready(env=env)
        sneaked_mail = await jobs_db.enqueue(
            "email.send", {"to": ["a@example.com"], "cc": ["b@example.com.evil.org"], "text": "t"}
        )
        sneaked_publish = await jobs_db.enqueue(
            "rabbitmq.publish", {"routing_key": "q", "body": "b"}
        )
        refused_mail = await jobs_db.wait_status(
            sneaked_mail, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )
        refused_publish = await jobs_db.wait_status(
            sneaked_publish, "failed", timeout=TIMEOUT, diagnostics=fleet.diagnostics
        )

        assert smtp.messages == []
    assert (mail.status_code, mail.json()["detail"]) == (
        400,
        "args of task 'email.send': recipient 'x@evil.org' is not in a domain"
        " EMAIL_ALLOWED_RECIPIENT_DOMAINS allows",
    )
    assert (publish.status_code, publish.json()["detail"]) == (
        400,
        "args of task 'rabbitmq.publish': exchange 'amq.topic' is not in"
        " RABBITMQ_ALLOWED_EXCHANGES",
    )
    assert (default.status_code, default.json()["detail"]) == (
        400,
        "args of task 'rabbitmq.publish': exchange 'amq.default' is not in"
        " RABBITMQ_ALLOWED_EXCHANGES",
    )
    assert await jobs_db.scalar("SELECT count(*) FROM dl_jobs") == 2  # the two sneaked ones
    assert (refused_mail["attempt"], refused_mail["error"]) == (
        1,
        "DestinationRefusedError: recipient 'b@example.com.evil.org' is not in a domain"
        " EMAIL_ALLOWED_RECIPIENT_DOMAINS allows",
    )
    assert (refused_publish["attempt"], refused_publish["error"]) == (
        1,
        "DestinationRefusedError: exchange 'amq.default' is not in RABBITMQ_ALLOWED_EXCHANGES",
    )
