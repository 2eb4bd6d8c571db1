"""A real `python -m app serve` process per test module, on its own migrated database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.devserver.embedded_postgres import free_port
from app.settings import Settings
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SEC = 30.0


@dataclass
class ApiServer:
    """A running API process: where it answers and which database it uses."""

    base_url: str
    dsn: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def _server_env(database_url: str, port: int) -> dict[str, str]:
    """The caller's environment without any service setting, plus the server's own."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        {
            "DATABASE_URL": database_url,
            "APP_HOST": "127.0.0.1",
            "APP_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


async def start_api_server(
    database_url: str, log_path: Path, extra_env: dict[str, str] | None = None
) -> ApiServer:
    """Start the API and poll /health until it answers (or fail with the server's log)."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=PROJECT_ROOT,
            env={**_server_env(database_url, port), **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ApiServer(f"http://127.0.0.1:{port}", database_url, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_SEC
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"API exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if (await client.get("/health")).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                stop_api_server(server)
                raise RuntimeError(f"API not healthy in {START_TIMEOUT_SEC}s:\n{server.log_tail()}")
            await asyncio.sleep(0.05)  # poll interval


def stop_api_server(server: ApiServer) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@contextlib.asynccontextmanager
async def api_server_on_fresh_database(
    pg_server: PgServer,
    template_db: str,
    log_dir: Path,
    *,
    prefix: str = "dl_api",
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[ApiServer]:
    """An API process on its own database cloned from the migrated template; both go after."""
    name = unique_name(prefix)
    dsn = await create_database(pg_server, name, template=template_db)
    try:
        server = await start_api_server(dsn, log_dir / "server.log", extra_env=extra_env)
        try:
            yield server
        finally:
            stop_api_server(server)
    finally:
        await drop_database(pg_server, name)


@pytest.fixture(scope="module")
async def api_server(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """The API on a fresh migrated database, shared by one test module."""
    async with api_server_on_fresh_database(
        pg_server, template_db, tmp_path_factory.mktemp("api")
    ) as server:
        yield server


@pytest.fixture
async def client(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client aimed at the module's API server."""
    async with httpx.AsyncClient(base_url=api_server.base_url, timeout=30) as client:
        yield client
    assert api_server.process.poll() is None, f"API died:\n{api_server.log_tail()}"


@pytest.fixture
async def db(api_server: ApiServer) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the API's database, to check what the API wrote."""
    connection = await asyncpg.connect(api_server.dsn)
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
async def dead_db_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an API whose DATABASE_URL points at a port nothing listens on."""
    closed_port = free_port()
    server = await start_api_server(
        f"postgresql://postgres@127.0.0.1:{closed_port}/nowhere",
        tmp_path_factory.mktemp("api_dead_db") / "server.log",
    )
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            yield client
    finally:
        stop_api_server(server)
