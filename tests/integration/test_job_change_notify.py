"""Migration 0006's trigger: one NOTIFY per statement, only for status/progress/cancel changes,
and only while a job watch listens on the database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.db.job_changes import JOB_CHANGES_CHANNEL, LISTENER_APPLICATION_NAME, changed_job_ids
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, migrated_template, unique_name
from tests.support.waiting import wait_until

MAX_PAYLOAD_BYTES = 8000  # PostgreSQL refuses longer NOTIFY payloads


@pytest.fixture(scope="module", params=["public", "jobqueue"])
async def schema_template(
    request: pytest.FixtureRequest, pg_server: PgServer
) -> AsyncIterator[tuple[str, str]]:
    """A migrated template with the queue tables in each supported kind of schema."""
    schema: str = request.param
    name = await migrated_template(pg_server, schema)
    yield schema, name
    await drop_database(pg_server, name)


@pytest.fixture
async def notify_rig(
    pg_server: PgServer, schema_template: tuple[str, str]
) -> AsyncIterator[tuple[str, asyncpg.Connection, list[str]]]:
    """(schema, a writing connection, the payloads a job watch's connection receives)."""
    schema, template = schema_template
    name = unique_name("dl_notify")
    dsn = await create_database(pg_server, name, template=template)
    writer = await asyncpg.connect(dsn)
    listener = await asyncpg.connect(
        dsn, server_settings={"application_name": LISTENER_APPLICATION_NAME}
    )
    payloads: list[str] = []
    await listener.add_listener(JOB_CHANGES_CHANNEL, lambda *args: payloads.append(args[3]))
    try:
        yield schema, writer, payloads
    finally:
        if not listener.is_closed():
            await listener.close()
        await writer.close()
        await drop_database(pg_server, name)


async def insert_jobs(writer: asyncpg.Connection, schema: str, count: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    await writer.execute(
        f'INSERT INTO "{schema}".dl_jobs (job_id, queue, task, lock_key)'
        " SELECT id, 'etl.test', 'noop', 'k' FROM unnest($1::uuid[]) AS id",
        ids,
    )
    return ids


async def settle(writer: asyncpg.Connection, payloads: list[str]) -> list[str]:
    """Every payload sent so far: a marker NOTIFY after them arrives last."""
    marker = f"marker-{uuid.uuid4()}"
    await writer.execute("SELECT pg_notify($1, $2)", JOB_CHANGES_CHANNEL, marker)
    await wait_until(lambda: marker in payloads, timeout=10, what="the marker notification")
    sent = payloads[: payloads.index(marker)]
    payloads.clear()
    return sent


async def test_job_change_notify_sends_one_notification_per_statement_in_chunks(
    notify_rig: tuple[str, asyncpg.Connection, list[str]],
) -> None:
    schema, writer, payloads = notify_rig
    ids = await insert_jobs(writer, schema, 450)
    assert await settle(writer, payloads) == []  # inserts are not changes

    await writer.execute(f"UPDATE \"{schema}\".dl_jobs SET status = 'running'")
    sent = await settle(writer, payloads)

    assert len(sent) == 3  # 200 + 200 + 50 ids
    assert all(len(payload.encode()) < MAX_PAYLOAD_BYTES for payload in sent)
    notified = [job_id for payload in sent for job_id in changed_job_ids(payload)]
    assert sorted(notified) == sorted(str(job_id) for job_id in ids)


async def test_job_change_notify_names_only_rows_whose_status_progress_or_flag_changed(
    notify_rig: tuple[str, asyncpg.Connection, list[str]],
) -> None:
    schema, writer, payloads = notify_rig
    first, second, third = await insert_jobs(writer, schema, 3)
    jobs = f'"{schema}".dl_jobs'

    await writer.execute(f"UPDATE {jobs} SET heartbeat_at = now(), priority = 5")
    await writer.execute(f"UPDATE {jobs} SET status = 'queued'")  # the same value
    assert await settle(writer, payloads) == []

    await writer.execute(f"""UPDATE {jobs} SET progress = '{{"n": 1}}' WHERE job_id = $1""", first)
    await writer.execute(f"UPDATE {jobs} SET cancel_requested = true WHERE job_id = $1", second)
    await writer.execute(
        f"UPDATE {jobs} SET status = 'canceled', finished_at = now() WHERE job_id = ANY($1)",
        [second, third],
    )
    sent = await settle(writer, payloads)

    assert [sorted(changed_job_ids(p)) for p in sent] == [
        [str(first)],
        [str(second)],
        sorted([str(second), str(third)]),
    ]


async def test_job_change_notify_is_silent_while_no_job_watch_is_connected(
    pg_server: PgServer, schema_template: tuple[str, str]
) -> None:
    schema, template = schema_template
    names = [unique_name("dl_notify"), unique_name("dl_notify_other")]
    dsn, other_dsn = [await create_database(pg_server, n, template=template) for n in names]
    writer = await asyncpg.connect(dsn)
    plain_listener = await asyncpg.connect(dsn)  # listens, but is no job watch
    # A job watch of another database on the same server does not count either.
    other_watch = await asyncpg.connect(
        other_dsn, server_settings={"application_name": LISTENER_APPLICATION_NAME}
    )
    payloads: list[str] = []
    await plain_listener.add_listener(JOB_CHANGES_CHANNEL, lambda *args: payloads.append(args[3]))
    try:
        await insert_jobs(writer, schema, 3)
        await writer.execute(f"UPDATE \"{schema}\".dl_jobs SET status = 'running'")
        assert await settle(writer, payloads) == []

        watch = await asyncpg.connect(
            dsn, server_settings={"application_name": LISTENER_APPLICATION_NAME}
        )
        await writer.execute(f"UPDATE \"{schema}\".dl_jobs SET status = 'queued'")
        sent = await settle(writer, payloads)
        await watch.close()
        assert len(sent) == 1
        assert len(changed_job_ids(sent[0])) == 3
    finally:
        for connection in (writer, plain_listener, other_watch):
            await connection.close()
        for name in names:
            await drop_database(pg_server, name)
