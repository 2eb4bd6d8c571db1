"""A PostgreSQL server of one test's own, which the test may stop, restart or cut off.

The session's server is shared by every test, so a fault scenario that restarts PostgreSQL
or reaches it over another network gets a server of its own: the same embedded server the
service uses, on a free port, migrated to head.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from app.db.engine import create_engine
from app.db.migrate import upgrade_to_head
from app.devserver.embedded_postgres import EmbeddedPostgres, free_port
from app.settings import load_settings
from tests.support.jobs_db import JobsDb

# Durable, as in production: an immediate shutdown is a crash, and with synchronous_commit
# off it would lose commits the workers were told had happened.
SETTINGS = {"fsync": "on", "synchronous_commit": "on", "max_connections": "300"}
# How PostgreSQL's own shutdown modes are asked for (pg_ctl stop -m ...): the signal the
# postmaster takes for each.
SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


@dataclass
class PrivatePostgres:
    """A running embedded server and its migrated database."""

    server: EmbeddedPostgres

    @property
    def dsn(self) -> str:
        """The database's DSN (plain postgresql://, on loopback)."""
        return self.server.url

    def dsn_at(self, host: str) -> str:
        """The same database reached at another of the server's addresses."""
        return self.dsn.replace("@127.0.0.1:", f"@{host}:", 1)

    def stop(self, mode: str, timeout_sec: float = 30) -> None:
        """Shut the server down the way `pg_ctl stop -m <mode>` does, and wait for it."""
        process = self.server.process
        if process is None or process.poll() is not None:
            raise RuntimeError("the server is not running")
        process.send_signal(SHUTDOWN_SIGNALS[mode])
        try:
            process.wait(timeout=timeout_sec)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        self.server.process = None

    def start(self) -> None:
        """Start the stopped server again on the same data and port (crash recovery included)."""
        self.server.start(timeout_sec=60)

    @asynccontextmanager
    async def jobs_db(self) -> AsyncIterator[JobsDb]:
        """Enqueue and inspect jobs on this server's database from the test process."""
        settings = load_settings(database_url=self.dsn)
        engine = create_engine(settings, pool_size=5)
        try:
            yield JobsDb(engine=engine, settings=settings)
        finally:
            await engine.dispose()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log, for failure messages."""
        path = self.server.log_file
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@asynccontextmanager
async def private_postgres(
    data_root: Path,
    *,
    listen: Sequence[str] = ("127.0.0.1",),
    client_networks: Sequence[str] = (),
    settings: Mapping[str, str] | None = None,
) -> AsyncIterator[PrivatePostgres]:
    """Start a server listening on `listen`, taking clients (with the password) from
    loopback and `client_networks`; migrate it.

    `settings` add to or override the server's (e.g. a small `max_connections` to run out
    of, or shared_preload_libraries).

    Stopped (immediately: its data is thrown away) when the block exits.
    """
    server = EmbeddedPostgres(
        data_root / "pgdata",
        free_port(),
        database="faults",
        extra_settings={**SETTINGS, **(settings or {})},
        listen_addresses=tuple(listen),
        client_networks=tuple(client_networks),
    )
    server.start(timeout_sec=60)
    running = PrivatePostgres(server)
    try:
        await asyncio.to_thread(
            upgrade_to_head,
            running.dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            "public",
        )
        yield running
    finally:
        if server.process is not None and server.process.poll() is None:
            running.stop("immediate")
