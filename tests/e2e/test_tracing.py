"""Traces across real processes: the API and a `pgq run` worker export over OTLP/HTTP to a
local receiver, and one trace runs from the caller's trigger through each attempt to the
jobs an attempt triggers. Without OTEL_* variables nothing is stored; with OTEL_SDK_DISABLED
nothing is exported.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api_servers import E2E_PIPELINES_API_ENV, start_api_server, stop_api_server
from tests.support.jobs_db import JobsDb
from tests.support.local_servers import LOOPBACK_CALLBACKS, RecordingHttpServer, http_server
from tests.support.otlp import ReceivedSpan, otlp_env, spans
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet

TRIGGER = "/api/v1/jobs/trigger"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingHttpServer]:
    """The OTLP receiver; OTEL_* of the test's own environment cannot leak into the processes."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    with http_server() as server:
        yield server


def client_traceparent() -> tuple[str, str, str]:
    """A caller's own trace: (traceparent, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def attempts_of(received: list[ReceivedSpan], job_id: uuid.UUID | str) -> list[ReceivedSpan]:
    """The attempt spans of one job, by attempt number."""
    found = [
        s
        for s in received
        if s.kind == "consumer" and s.attributes.get("dataloader.job.id") == str(job_id)
    ]
    return sorted(found, key=lambda s: int(s.attributes["dataloader.job.attempt"]))


@pytest.mark.timeout(180)
async def test_tracing_one_trace_runs_from_trigger_through_attempts_to_dependents(
    receiver: RecordingHttpServer,
    database_dsn: str,
    jobs_db: JobsDb,
    fleet: WorkerFleet,
    tmp_path: Path,
) -> None:
    env = otlp_env(receiver)
    api = await start_api_server(
        database_dsn, tmp_path / "api.log", extra_env={**E2E_PIPELINES_API_ENV, **env}
    )
    try:
        await fleet.start_ready("alpha", env=env)
        retried_header, retried_trace, caller_span = client_traceparent()
        parent_header, parent_trace, _ = client_traceparent()
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
            # Fails its first attempt, succeeds on the second.
            retried = await client.post(
                TRIGGER,
                json={
                    "queue": "etl.default",
                    "task": "noop",
                    "lock_key": "traced-1",
                    "args": {"steps": 1, "sleep": 0, "fail_at_step": 0, "fail_attempts": 1},
                    "max_attempts": 3,
                },
                headers={"traceparent": retried_header},
            )
            # Triggers a follow-up job from inside its attempt.
            parent = await client.post(
                TRIGGER,
                json={"queue": "etl.default", "task": "test.trigger_child", "lock_key": "traced-2"},
                headers={"traceparent": parent_header},
            )
        assert retried.status_code == parent.status_code == 200, (retried.text, parent.text)
        retried_id = uuid.UUID(retried.json()["job_id"])
        parent_id = uuid.UUID(parent.json()["job_id"])
        for job_id in (retried_id, parent_id):
            await jobs_db.wait_status(
                job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics
            )
        child_id = uuid.UUID((await jobs_db.job(parent_id))["result"]["child"])
        await jobs_db.wait_status(child_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics)

        def all_exported() -> bool:
            received = spans(receiver)
            return (
                len(attempts_of(received, retried_id)) == 2
                and len(attempts_of(received, parent_id)) == 1
                and len(attempts_of(received, child_id)) == 1
                and sum(s.kind == "server" and s.name == f"POST {TRIGGER}" for s in received) == 2
            )

        await wait_until(
            all_exported,
            timeout=20,
            what="the spans of both triggers and all four attempts",
            diagnostics=lambda: f"{spans(receiver)}\n{fleet.diagnostics()}\n{api.log_tail()}",
        )
    finally:
        stop_api_server(api)

    received = spans(receiver)
    servers = {s.trace_id: s for s in received if s.kind == "server" and s.name.startswith("POST")}

    # The trigger: the API's request span, under the caller's own span.
    trigger = servers[retried_trace]
    assert (trigger.service, trigger.parent_span_id) == ("dataloader-api", caller_span)
    assert trigger.attributes["http.response.status_code"] == 200
    stored = (await jobs_db.job(retried_id))["traceparent"]
    assert stored.split("-")[1:3] == [retried_trace, trigger.span_id]

    # Both attempts: children of the trigger in its trace, the first failed and retried.
    first, second = attempts_of(received, retried_id)
    for attempt in (first, second):
        assert (attempt.service, attempt.name) == ("dataloader-worker", "job noop")
        assert (attempt.trace_id, attempt.parent_span_id) == (retried_trace, trigger.span_id)
        assert attempt.attributes["dataloader.job.queue"] == "etl.default"
        assert attempt.attributes["dataloader.worker.id"] == "alpha"
    assert [
        first.attributes["dataloader.job.attempt"],
        second.attributes["dataloader.job.attempt"],
    ] == [1, 2]
    assert (first.attributes["dataloader.job.outcome"], first.error) == ("retried", True)
    assert "exception" in first.events
    assert (second.attributes["dataloader.job.outcome"], second.error) == ("succeeded", False)

    # A job triggered by an attempt: its own attempt is that attempt's child, same trace.
    (parent_attempt,) = attempts_of(received, parent_id)
    (child_attempt,) = attempts_of(received, child_id)
    assert parent_attempt.parent_span_id == servers[parent_trace].span_id
    assert (child_attempt.trace_id, child_attempt.parent_span_id) == (
        parent_trace,
        parent_attempt.span_id,
    )


@pytest.mark.timeout(120)
async def test_tracing_http_callback_carries_the_attempt_span_to_its_receiver(
    receiver: RecordingHttpServer, jobs_db: JobsDb, fleet: WorkerFleet
) -> None:
    await fleet.start_ready("alpha", env={**otlp_env(receiver), **LOOPBACK_CALLBACKS})
    with http_server() as partner:
        job_id = await jobs_db.enqueue(
            "http.callback", {"url": partner.url("/hook"), "data": {"rows": 3}}
        )
        await jobs_db.wait_status(job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics)
        [request] = partner.requests_to("/hook")

    await wait_until(
        lambda: attempts_of(spans(receiver), job_id),
        timeout=20,
        what="the callback's attempt span",
        diagnostics=fleet.diagnostics,
    )
    [attempt] = attempts_of(spans(receiver), job_id)
    # The partner's spans would be children of the attempt, in its trace.
    version, trace_id, parent_id, flags = request.headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", attempt.trace_id, attempt.span_id)
    assert int(flags, 16) & 1, "sampled"


@pytest.mark.timeout(120)
async def test_tracing_is_off_by_default_and_off_when_disabled(
    receiver: RecordingHttpServer,
    database_dsn: str,
    jobs_db: JobsDb,
    fleet: WorkerFleet,
    tmp_path: Path,
) -> None:
    # The API with no OTEL_* variable at all; the worker pointed at the receiver but with
    # the SDK disabled, which wins over everything else.
    api = await start_api_server(database_dsn, tmp_path / "api.log")
    try:
        await fleet.start_ready("alpha", env={**otlp_env(receiver), "OTEL_SDK_DISABLED": "true"})
        header, _, _ = client_traceparent()
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
            response = await client.post(
                TRIGGER,
                json={
                    "queue": "etl.default",
                    "task": "noop",
                    "lock_key": "untraced",
                    "args": {"steps": 1, "sleep": 0},
                },
                headers={"traceparent": header},
            )
        assert response.status_code == 200, response.text
        job_id = uuid.UUID(response.json()["job_id"])
        await jobs_db.wait_status(job_id, "succeeded", timeout=30, diagnostics=fleet.diagnostics)
    finally:
        stop_api_server(api)
    # A clean stop flushes whatever a process still held: nothing may have been sent.
    fleet.stop_all()

    job = await jobs_db.job(job_id)
    assert (job["traceparent"], job["tracestate"]) == (None, None)
    assert receiver.requests == []
    assert "tracing on" not in fleet.by_id("alpha").log()
