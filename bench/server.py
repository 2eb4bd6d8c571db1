"""The PostgreSQL server of a run: a throw-away embedded one, or DATABASE_URL's.

Migrations run once into a template database; every repetition gets its own
`CREATE DATABASE ... TEMPLATE` copy, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.db.migrate import upgrade_to_head
from app.devserver.embedded_postgres import EmbeddedPostgres, free_port

QUEUE_SCHEMA = "public"  # pgqueuer's tables and dl_* live here, as bare pgqueuer expects
SHOWN_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "max_connections",
    "shared_buffers",
)


@dataclass
class BenchServer:
    """Where the benchmark databases live."""

    admin_dsn: str  # a database that always exists; CREATE/DROP DATABASE run here
    embedded: bool
    settings: dict[str, str] = field(default_factory=dict)

    def dsn(self, database: str) -> str:
        """The DSN of `database` on this server."""
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))


def plain_dsn(url: str) -> str:
    """A `postgresql://` DSN from any spelling the service accepts."""
    return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", url)


def sqlalchemy_url(dsn: str) -> str:
    """The DSN spelled for SQLAlchemy's asyncpg dialect."""
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@contextmanager
def bench_server(workdir: Path) -> Iterator[BenchServer]:
    """DATABASE_URL's server when set; else a private embedded PostgreSQL in `workdir`."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield BenchServer(admin_dsn=plain_dsn(configured), embedded=False)
        return
    postgres = EmbeddedPostgres(workdir / "pg", free_port())
    postgres.start()
    try:
        yield BenchServer(admin_dsn=postgres.url, embedded=True)
    finally:
        postgres.stop()


async def read_settings(server: BenchServer) -> dict[str, str]:
    """The server settings that change the figures (SHOW fsync, synchronous_commit...)."""
    connection = await asyncpg.connect(server.admin_dsn)
    try:
        return {name: str(await connection.fetchval(f"SHOW {name}")) for name in SHOWN_SETTINGS}
    finally:
        await connection.close()


def unique_name(prefix: str) -> str:
    """A database name no other run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def _admin(server: BenchServer, statement: str) -> None:
    connection = await asyncpg.connect(server.admin_dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_template(server: BenchServer) -> str:
    """A database migrated to head (pgqueuer's and our tables in `public`); its name."""
    name = unique_name("bench_tpl")
    await _admin(server, f'CREATE DATABASE "{name}"')
    try:
        await asyncio.to_thread(upgrade_to_head, sqlalchemy_url(server.dsn(name)), QUEUE_SCHEMA)
    except BaseException:
        await drop_database(server, name)
        raise
    return name


async def drop_database(server: BenchServer, name: str) -> None:
    """DROP DATABASE, disconnecting whoever is still connected."""
    await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_database(server: BenchServer, template: str, prefix: str) -> AsyncIterator[str]:
    """A copy of the template for one repetition; yields its DSN and drops it afterwards."""
    name = unique_name(prefix)
    await _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield server.dsn(name)
    finally:
        await drop_database(server, name)
