"""A PostgreSQL server for the test session and databases cloned from a migrated template."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.db.migrate import upgrade_to_head
from app.devserver.embedded_postgres import EmbeddedPostgres, free_port
from app.settings import Settings, load_settings


@dataclass
class TestServer:
    """Where the test databases live: admin DSN and a way to build per-database DSNs."""

    admin_dsn: str  # a database on the server that always exists ("postgres")

    def dsn(self, database: str) -> str:
        """The DSN of `database` on this server."""
        return re.sub(r"/[^/?]*(\?|$)", f"/{database}\\1", self.admin_dsn, count=1)


@contextmanager
def test_server(tmp_root: Path) -> Iterator[TestServer]:
    """DATABASE_URL's server when set; else a private embedded PostgreSQL for the session."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        plain = re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", configured)
        server = TestServer(admin_dsn=plain)
        yield TestServer(admin_dsn=server.dsn("postgres"))
        return
    postgres = EmbeddedPostgres(
        tmp_root / "pgdata",
        free_port(),
        database="postgres",
        extra_settings={"fsync": "off", "synchronous_commit": "off", "max_connections": "300"},
    )
    postgres.start()
    try:
        yield TestServer(admin_dsn=postgres.url)
    finally:
        postgres.stop()


async def create_database(server: TestServer, name: str, template: str | None = None) -> str:
    """CREATE DATABASE (optionally from a template); returns its DSN."""
    connection = await asyncpg.connect(server.admin_dsn)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await connection.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await connection.close()
    return server.dsn(name)


async def drop_database(server: TestServer, name: str) -> None:
    """DROP DATABASE, disconnecting whoever is still connected."""
    connection = await asyncpg.connect(server.admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def unique_name(prefix: str) -> str:
    """A database name no other test (or test run) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def migrated_template(server: TestServer, schema: str) -> str:
    """A database migrated to head with the queue tables in `schema`; returns its name."""
    name = unique_name(f"dl_tmpl_{schema}")
    dsn = await create_database(server, name)
    import asyncio

    await asyncio.to_thread(
        upgrade_to_head, dsn.replace("postgresql://", "postgresql+asyncpg://", 1), schema
    )
    return name


def settings_for(dsn: str, **overrides: object) -> Settings:
    """Service settings pointed at one test database."""
    return load_settings(database_url=dsn, **overrides)
