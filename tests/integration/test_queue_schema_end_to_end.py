"""With PG_SCHEMA_QUEUE=jobqueue, JobService trigger/status/cancel use that schema's tables only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from app.db.engine import create_engine, create_session_factory
from app.domain.errors import JobFinishedError, JobNotFoundError
from app.domain.spec import JobCreate
from app.jobs.service import JobService
from tests.support.databases import TestServer as PgServer
from tests.support.databases import (
    create_database,
    drop_database,
    migrated_template,
    settings_for,
    unique_name,
)

SCHEMA = "jobqueue"


@dataclass
class SchemaRig:
    """A JobService on a database whose queue tables live in SCHEMA, and a direct connection."""

    service: JobService
    db: asyncpg.Connection


@pytest.fixture(scope="module")
async def jobqueue_template(pg_server: PgServer) -> AsyncIterator[str]:
    """A template database migrated with its queue tables in SCHEMA."""
    name = await migrated_template(pg_server, SCHEMA)
    yield name
    await drop_database(pg_server, name)


@pytest.fixture
async def rig(pg_server: PgServer, jobqueue_template: str) -> AsyncIterator[SchemaRig]:
    name = unique_name("dl_jobqueue")
    dsn = await create_database(pg_server, name, template=jobqueue_template)
    settings = settings_for(dsn, pg_schema_queue=SCHEMA)
    engine = create_engine(settings)
    db = await asyncpg.connect(dsn)
    try:
        yield SchemaRig(JobService(create_session_factory(engine), settings), db)
    finally:
        await db.close()
        await engine.dispose()
        await drop_database(pg_server, name)


def spec(**overrides: object) -> JobCreate:
    values: dict[str, object] = {"queue": "etl.schema", "task": "noop", "lock_key": "tenant-9"}
    values.update(overrides)
    return JobCreate(**values)  # type: ignore[arg-type]


async def test_queue_schema_tables_exist_only_in_jobqueue(rig: SchemaRig) -> None:
    for table in ("dl_jobs", "dl_job_events", "pgqueuer", "pgqueuer_log"):
        assert await rig.db.fetchval("SELECT to_regclass($1)::text", f"{SCHEMA}.{table}") == (
            f"{SCHEMA}.{table}"
        )
        assert await rig.db.fetchval("SELECT to_regclass($1)", f"public.{table}") is None


async def test_queue_schema_trigger_and_status_use_jobqueue(rig: SchemaRig) -> None:
    result = await rig.service.trigger(spec(args={"day": "2026-11-24"}, priority=7))

    assert result.created is True
    assert result.status == "queued"
    job = await rig.db.fetchrow(f"SELECT * FROM {SCHEMA}.dl_jobs WHERE job_id = $1", result.job_id)
    assert job is not None
    dispatch = await rig.db.fetchrow(f"SELECT * FROM {SCHEMA}.pgqueuer")
    assert dispatch["id"] == job["pgq_job_id"]
    assert bytes(dispatch["payload"]) == result.job_id.bytes
    assert dispatch["entrypoint"] == "etl.schema"
    events = await rig.db.fetch(f"SELECT event FROM {SCHEMA}.dl_job_events")
    assert [e["event"] for e in events] == ["queued"]

    view = await rig.service.status(result.job_id)
    assert view.job_id == result.job_id
    assert view.status == "queued"
    assert view.queue == "etl.schema"
    assert view.task == "noop"
    assert view.args == {"day": "2026-11-24"}
    assert view.priority == 7
    assert view.attempt == 0


async def test_queue_schema_idempotency_key_returns_same_job(rig: SchemaRig) -> None:
    first = await rig.service.trigger(spec(idempotency_key="daily:2026-11-24"))
    second = await rig.service.trigger(spec(idempotency_key="daily:2026-11-24"))

    assert second.job_id == first.job_id
    assert (first.created, second.created) == (True, False)
    assert await rig.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.dl_jobs") == 1
    assert await rig.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.pgqueuer") == 1


async def test_queue_schema_cancel_queued_job_withdraws_dispatch(rig: SchemaRig) -> None:
    result = await rig.service.trigger(spec())
    pgq_job_id = await rig.db.fetchval(
        f"SELECT pgq_job_id FROM {SCHEMA}.dl_jobs WHERE job_id = $1", result.job_id
    )

    view = await rig.service.cancel(result.job_id)

    assert view.status == "canceled"
    assert view.finished_at is not None
    assert await rig.db.fetchval(f"SELECT count(*) FROM {SCHEMA}.pgqueuer") == 0
    logged = await rig.db.fetch(
        f"SELECT status::text FROM {SCHEMA}.pgqueuer_log WHERE job_id = $1", pgq_job_id
    )
    assert "canceled" in {row["status"] for row in logged}
    events = await rig.db.fetch(
        f"SELECT event FROM {SCHEMA}.dl_job_events WHERE job_id = $1 ORDER BY id", result.job_id
    )
    assert [e["event"] for e in events] == ["queued", "canceled"]
    assert (await rig.service.status(result.job_id)).status == "canceled"

    with pytest.raises(JobFinishedError) as again:
        await rig.service.cancel(result.job_id)
    assert again.value.status == "canceled"


async def test_queue_schema_cancel_running_job_requests_cancel(rig: SchemaRig) -> None:
    result = await rig.service.trigger(spec())
    await rig.db.execute(
        f"UPDATE {SCHEMA}.dl_jobs SET status = 'running', attempt = 1, started_at = now(),"
        " lease_expires_at = now() + interval '60 seconds' WHERE job_id = $1",
        result.job_id,
    )

    view = await rig.service.cancel(result.job_id)

    assert view.status == "running"
    assert view.cancel_requested is True
    event = await rig.db.fetchrow(
        f"SELECT event, attempt FROM {SCHEMA}.dl_job_events WHERE job_id = $1"
        " ORDER BY id DESC LIMIT 1",
        result.job_id,
    )
    assert (event["event"], event["attempt"]) == ("cancel_requested", 1)


async def test_queue_schema_unknown_job_is_not_found(rig: SchemaRig) -> None:
    missing = uuid.uuid4()

    with pytest.raises(JobNotFoundError):
        await rig.service.status(missing)
    with pytest.raises(JobNotFoundError):
        await rig.service.cancel(missing)
