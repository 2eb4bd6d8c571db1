"""A job stores the trace context of its trigger: in-session callers, HTTP triggers (single,
concurrent and bulk), schedules the leader fires; nothing at all while tracing is off.

Spans go to the SDK's InMemorySpanExporter through a provider this process uses for its
own spans (app.observability.tracing.set_provider), as the OTEL_* variables would set one up.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.asgi import create_app
from app.devserver.embedded_postgres import free_port
from app.domain.attempts import StartRequest
from app.jobs.enqueue import enqueue_in_session, enqueue_many_in_session
from app.jobs.manager import JobManager
from app.jobs.schedule_service import ScheduleService
from app.observability import tracing
from app.observability.http_tracing import HttpTracingMiddleware
from app.settings import Settings
from tests.support.databases import settings_for
from tests.support.schedules import jobs_of, schedule_spec, set_columns
from tests.support.specs import echo_spec
from tests.support.waiting import wait_until
from worker.maintenance.config import MaintenanceConfig
from worker.maintenance.scheduler import Scheduler

TRIGGER = "/api/v1/jobs/trigger"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every ended span kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_provider(provider)
    try:
        yield exporter
    finally:
        tracing.set_provider(None)
        provider.shutdown()


def traceparent_of(span: ReadableSpan) -> str:
    """The W3C traceparent that names `span`."""
    context = span.get_span_context()
    assert context is not None
    flags = int(context.trace_flags)
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"


def client_traceparent() -> tuple[str, str, str]:
    """A caller's own trace: (traceparent, trace id, span id), as hex."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def stored(db: asyncpg.Connection, job_id: uuid.UUID | str) -> tuple[str | None, str | None]:
    row = await db.fetchrow(
        "SELECT traceparent, tracestate FROM dl_jobs WHERE job_id = $1", uuid.UUID(str(job_id))
    )
    assert row is not None
    return row["traceparent"], row["tracestate"]


@contextlib.asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API served by uvicorn in this loop (real HTTP), and a client for it."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), timeout=20, what="uvicorn start")
    assert not task.done(), task.exception()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def body(**overrides: object) -> dict[str, object]:
    return {"queue": "etl.test", "task": "test.echo", "lock_key": f"k-{uuid.uuid4()}", **overrides}


# --- in-session callers -----------------------------------------------------------------------


async def test_enqueue_in_session_stores_the_callers_current_span(
    spans: InMemorySpanExporter,
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    tracer = tracing.tracer()
    assert tracer is not None
    # A caller inside a trace that carries vendor state: both parts are kept.
    parent = tracing.stored_context(client_traceparent()[0], "vendor=abc")
    with tracer.start_as_current_span("caller", context=parent):
        async with sessions() as session, session.begin():
            one = await enqueue_in_session(session, echo_spec(), settings)
            many = await enqueue_many_in_session(
                session, [echo_spec(lock_key="a"), echo_spec(lock_key="b")], settings
            )

    (caller,) = spans.get_finished_spans()
    for job_id in [one.job_id, *(job.job_id for job in many)]:
        assert await stored(db, job_id) == (traceparent_of(caller), "vendor=abc")


async def test_enqueue_in_session_outside_a_span_stores_nothing(
    spans: InMemorySpanExporter,
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    async with sessions() as session, session.begin():
        created = await enqueue_in_session(session, echo_spec(), settings)

    assert await stored(db, created.job_id) == (None, None)
    assert spans.get_finished_spans() == ()


async def test_start_hands_the_worker_the_stored_context(
    spans: InMemorySpanExporter,
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    tracer = tracing.tracer()
    assert tracer is not None
    with tracer.start_as_current_span("caller") as caller:
        async with sessions() as session, session.begin():
            created = await enqueue_in_session(session, echo_spec(), settings)
    manager = JobManager.from_settings(settings)
    pgq_job_id = await db.fetchval(
        "SELECT pgq_job_id FROM dl_jobs WHERE job_id = $1", created.job_id
    )
    answers = await manager.start_many(
        db, [StartRequest(created.job_id, pgq_job_id)], [], "test-worker"
    )
    started = answers[created.job_id].attempt
    assert started is not None
    await manager.unlock_keys(db, [started.lock_key])

    assert started.traceparent == traceparent_of(caller)
    assert started.tracestate is None


# --- HTTP triggers ----------------------------------------------------------------------------


async def test_http_trigger_stores_the_request_span_under_the_callers_traceparent(
    spans: InMemorySpanExporter, db: asyncpg.Connection, database_dsn: str
) -> None:
    header, trace_id, caller_span_id = client_traceparent()
    async with api(settings_for(database_dsn)) as client:
        response = await client.post(TRIGGER, json=body(), headers={"traceparent": header})
    assert response.status_code == 200, response.text

    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.name == f"POST {TRIGGER}"
    assert server.parent is not None
    assert (f"{server.parent.trace_id:032x}", f"{server.parent.span_id:016x}") == (
        trace_id,
        caller_span_id,
    )
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert await stored(db, response.json()["job_id"]) == (traceparent_of(server), None)


async def test_http_triggers_in_one_round_keep_their_own_contexts(
    spans: InMemorySpanExporter, db: asyncpg.Connection, database_dsn: str
) -> None:
    """Concurrent triggers share a group-commit round written by another task: each job
    must still get its own request's context, not the round's."""
    headers = [client_traceparent() for _ in range(12)]
    async with api(settings_for(database_dsn)) as client:
        responses = await asyncio.gather(
            *(client.post(TRIGGER, json=body(), headers={"traceparent": h}) for h, _, _ in headers)
        )
    for response, (_, trace_id, _) in zip(responses, headers, strict=True):
        assert response.status_code == 200, response.text
        traceparent, _ = await stored(db, response.json()["job_id"])
        assert traceparent is not None
        assert traceparent.split("-")[1] == trace_id


async def test_http_bulk_trigger_stores_the_request_span_on_every_job(
    spans: InMemorySpanExporter, db: asyncpg.Connection, database_dsn: str
) -> None:
    async with api(settings_for(database_dsn)) as client:
        response = await client.post(TRIGGER + "/bulk", json={"jobs": [body(), body(), body()]})
    assert response.status_code == 200, response.text

    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.parent is None  # no traceparent header: the request starts the trace
    for job in response.json()["jobs"]:
        assert await stored(db, job["job_id"]) == (traceparent_of(server), None)


async def test_http_schedule_run_stores_the_request_span(
    spans: InMemorySpanExporter, db: asyncpg.Connection, database_dsn: str
) -> None:
    schedule = {"name": "nightly", "cron": "0 3 * * *", **body()}
    async with api(settings_for(database_dsn)) as client:
        created = await client.post("/api/v1/schedules", json=schedule)
        assert created.status_code == 201, created.text
        spans.clear()
        run = await client.post("/api/v1/schedules/nightly/run")
    assert run.status_code == 200, run.text

    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.name == "POST /api/v1/schedules/{name}/run"  # the template, never the name
    assert await stored(db, run.json()["job"]["job_id"]) == (traceparent_of(server), None)


async def test_http_trigger_with_tracing_off_stores_nothing_and_adds_no_middleware(
    db: asyncpg.Connection, database_dsn: str
) -> None:
    assert tracing.tracer() is None  # no OTEL_* variable in the tests' environment
    app = create_app(settings_for(database_dsn))
    assert HttpTracingMiddleware not in [getattr(m, "middleware", m) for m in app.middleware]
    header, _, _ = client_traceparent()
    async with api(settings_for(database_dsn)) as client:
        response = await client.post(TRIGGER, json=body(), headers={"traceparent": header})
        bulk = await client.post(TRIGGER + "/bulk", json={"jobs": [body()]})
    assert response.status_code == bulk.status_code == 200

    assert await stored(db, response.json()["job_id"]) == (None, None)
    assert await stored(db, bulk.json()["jobs"][0]["job_id"]) == (None, None)


# --- schedules --------------------------------------------------------------------------------


async def test_schedule_fired_by_the_leader_is_the_parent_of_its_job(
    spans: InMemorySpanExporter,
    db: asyncpg.Connection,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = date_trunc('minute', now())")
    config = MaintenanceConfig.from_settings(settings).scheduler
    scheduler = Scheduler(sessions, settings, "test-leader", config, tracer=tracing.tracer())

    await scheduler.run_once()

    (job,) = await jobs_of(engine, "every-minute")
    (fire,) = spans.get_finished_spans()
    assert (fire.name, fire.kind, fire.parent) == ("schedule every-minute", SpanKind.PRODUCER, None)
    assert fire.attributes is not None
    assert fire.attributes["dataloader.job.id"] == str(job["job_id"])
    assert await stored(db, job["job_id"]) == (traceparent_of(fire), None)


async def test_schedule_fired_without_a_tracer_stores_nothing(
    db: asyncpg.Connection,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await ScheduleService(sessions, settings).create(schedule_spec())
    await set_columns(engine, "every-minute", "next_run_at = date_trunc('minute', now())")
    config = MaintenanceConfig.from_settings(settings).scheduler

    await Scheduler(sessions, settings, "test-leader", config).run_once()

    (job,) = await jobs_of(engine, "every-minute")
    assert await stored(db, job["job_id"]) == (None, None)
