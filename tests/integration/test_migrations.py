"""Alembic upgrade/downgrade on an empty database agree with pgqueuer's own view of its schema."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from app.db.migrate import downgrade_to_base, upgrade_to_head
from app.db.pgqueuer_schema import pgqueuer_settings, queries_for
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name

DL_TABLES = {
    "dl_jobs",
    "dl_job_events",
    "dl_schedules",
    "dl_queues",
    "dl_workers",
    "dl_rate_buckets",
    "dl_job_dependencies",
    "dl_workflows",
    "dl_batches",
}
PGQ_TABLES = {"pgqueuer", "pgqueuer_log", "pgqueuer_schedules", "pgqueuer_statistics"}
PGQ_TYPES = {"pgqueuer_status"}  # what pgqueuer 1.6.0 declares (and `pgq install` makes)


@pytest.fixture
async def empty_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """A brand-new database with nothing in it, dropped afterwards."""
    name = unique_name("dl_mig")
    dsn = await create_database(pg_server, name)
    yield dsn
    await drop_database(pg_server, name)


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def pgq_verify(dsn: str, schema: str, expect: str) -> subprocess.CompletedProcess[str]:
    """pgqueuer's own CLI: `pgq verify --expect present|absent` against the queue schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQUEUER_", "PG"))}
    if schema != "public":
        env["PGQUEUER_SCHEMA"] = schema
    pgq = Path(sys.executable).parent / "pgq"
    return subprocess.run(
        [str(pgq), "--pg-dsn", dsn, "verify", "--expect", expect],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def tables_by_schema(connection: asyncpg.Connection) -> dict[str, set[str]]:
    """Every dl_* and pgqueuer* table, by schema."""
    rows = await connection.fetch(
        "SELECT schemaname, tablename FROM pg_tables"
        " WHERE tablename LIKE 'dl\\_%' OR tablename LIKE 'pgqueuer%'"
    )
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["schemaname"], set()).add(row["tablename"])
    return found


async def pgqueuer_types(connection: asyncpg.Connection) -> set[str]:
    """Every user type whose name starts with pgqueuer, schema-qualified."""
    rows = await connection.fetch(
        "SELECT n.nspname || '.' || t.typname AS name FROM pg_type t"
        " JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE t.typname LIKE 'pgqueuer%' AND t.typtype = 'e'"
    )
    return {row["name"] for row in rows}


async def schema_exists(connection: asyncpg.Connection, schema: str) -> bool:
    return bool(await connection.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema))


async def assert_installed(connection: asyncpg.Connection, dsn: str, schema: str) -> None:
    """Both families of tables live in `schema` (only there), and pgqueuer agrees."""
    assert await tables_by_schema(connection) == {schema: DL_TABLES | PGQ_TABLES}
    assert await pgqueuer_types(connection) == {f"{schema}.{name}" for name in PGQ_TYPES}
    verify = await asyncio.to_thread(pgq_verify, dsn, schema, "present")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    plan = await queries_for(connection, pgqueuer_settings(schema)).plan_upgrade()
    assert plan.statements == ()


async def insert_job(connection: asyncpg.Connection, schema: str, **values: object) -> None:
    row: dict[str, object] = {
        "job_id": uuid.uuid4(),
        "queue": "etl.test",
        "task": "noop",
        "lock_key": "k",
        **values,
    }
    columns = ", ".join(row)
    placeholders = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await connection.execute(
        f"INSERT INTO {schema}.dl_jobs ({columns}) VALUES ({placeholders})", *row.values()
    )


@pytest.mark.parametrize("schema", ["public", "jobqueue"])
async def test_migrations_upgrade_downgrade_upgrade_round_trip(empty_dsn: str, schema: str) -> None:
    url = sqlalchemy_url(empty_dsn)
    connection = await asyncpg.connect(empty_dsn)
    try:
        assert await tables_by_schema(connection) == {}

        await asyncio.to_thread(upgrade_to_head, url, schema)
        await assert_installed(connection, empty_dsn, schema)

        await asyncio.to_thread(downgrade_to_base, url, schema)
        assert await tables_by_schema(connection) == {}
        assert await pgqueuer_types(connection) == set()
        assert await schema_exists(connection, schema) == (schema == "public")
        verify = await asyncio.to_thread(pgq_verify, empty_dsn, schema, "absent")
        assert verify.returncode == 0, verify.stdout + verify.stderr

        await asyncio.to_thread(upgrade_to_head, url, schema)
        await assert_installed(connection, empty_dsn, schema)
    finally:
        await connection.close()


@pytest.mark.parametrize("schema", ["public", "jobqueue"])
async def test_migrations_upgrade_twice_is_a_no_op(empty_dsn: str, schema: str) -> None:
    url = sqlalchemy_url(empty_dsn)
    await asyncio.to_thread(upgrade_to_head, url, schema)
    await asyncio.to_thread(upgrade_to_head, url, schema)

    connection = await asyncpg.connect(empty_dsn)
    try:
        await assert_installed(connection, empty_dsn, schema)
    finally:
        await connection.close()


@pytest.mark.parametrize("schema", ["public", "jobqueue"])
async def test_migrations_dl_jobs_constraints_reject_bad_rows(empty_dsn: str, schema: str) -> None:
    await asyncio.to_thread(upgrade_to_head, sqlalchemy_url(empty_dsn), schema)
    connection = await asyncpg.connect(empty_dsn)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await insert_job(connection, schema, status="done")
        with pytest.raises(asyncpg.CheckViolationError):
            await insert_job(connection, schema, max_attempts=0)
        with pytest.raises(asyncpg.CheckViolationError):
            await insert_job(connection, schema, attempt=-1)
        with pytest.raises(asyncpg.CheckViolationError):
            await insert_job(connection, schema, lease_ttl_sec=0)
        with pytest.raises(asyncpg.CheckViolationError):
            await insert_job(connection, schema, lock_key="")
        with pytest.raises(asyncpg.CheckViolationError):
            await insert_job(connection, schema, queue="")

        await insert_job(connection, schema, idempotency_key="once")
        with pytest.raises(asyncpg.UniqueViolationError):
            await insert_job(connection, schema, idempotency_key="once")
        # Jobs without a key never collide with each other.
        await insert_job(connection, schema)
        await insert_job(connection, schema)

        row = await connection.fetchrow(
            f"SELECT count(*) AS n, min(status) AS status, min(priority) AS priority,"
            f" min(max_attempts) AS max_attempts, min(args::text) AS args FROM {schema}.dl_jobs"
        )
        assert row["n"] == 3
        assert row["status"] == "queued"
        assert row["priority"] == 100
        assert row["max_attempts"] == 5
        assert json.loads(row["args"]) == {}
    finally:
        await connection.close()


async def test_migrations_match_the_models(empty_dsn: str) -> None:
    """Alembic's autogenerate finds nothing to add: migrations and app.db.models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.db.models import Base

    await asyncio.to_thread(upgrade_to_head, sqlalchemy_url(empty_dsn), "public")
    engine = create_async_engine(sqlalchemy_url(empty_dsn))

    def differences(sync_connection: object) -> list[object]:
        context = MigrationContext.configure(
            sync_connection,  # type: ignore[arg-type]
            opts={"include_name": lambda name, kind, _: kind != "table" or name in DL_TABLES},
        )
        return list(compare_metadata(context, Base.metadata))

    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(differences)
    finally:
        await engine.dispose()
    assert diff == []
