"""`python -m app migrate` with DATABASE_URL at PgBouncer in transaction mode.

Migrations run on a session of their own (DATABASE_DIRECT_URL): Alembic's version lock and
pgqueuer's install script do not belong on a pooled connection.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from app.devserver.embedded_postgres import free_port
from tests.support.api_servers import server_env
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name
from tests.support.paths import PROJECT_ROOT
from tests.support.pgbouncer import PgBouncer

MIGRATE_TIMEOUT_SEC = 60.0


async def _version(dsn: str) -> str | None:
    connection = await asyncpg.connect(dsn)
    try:
        version: str | None = await connection.fetchval("SELECT version_num FROM alembic_version")
        return version
    finally:
        await connection.close()


async def test_pooler_migrate_brings_an_empty_database_to_head(
    bouncer: PgBouncer, pg_server: PgServer, template_db: str
) -> None:
    name = unique_name("dl_pooler_migrate")
    direct = await create_database(pg_server, name)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "migrate",
            cwd=PROJECT_ROOT,
            env=server_env(bouncer.route(direct), free_port(), direct),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), MIGRATE_TIMEOUT_SEC)
        connection = await asyncpg.connect(direct)
        try:
            tables = {
                row["tablename"]
                for row in await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
        finally:
            await connection.close()
        # PgBouncer registers a database of its `*` entry at a client's first login to it.
        through_bouncer = {row["database"] for row in await bouncer.show("STATS")}

        assert process.returncode == 0, output.decode()
        assert name not in through_bouncer, "migrate connected through the pooler"
        assert await _version(direct) == await _version(pg_server.dsn(template_db))
        assert {"dl_jobs", "dl_job_events", "pgqueuer"} <= tables
    finally:
        await drop_database(pg_server, name)
