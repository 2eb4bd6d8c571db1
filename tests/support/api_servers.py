"""Real `python -m app serve` processes for tests: start one, wait until healthy, stop it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.devserver.embedded_postgres import free_port
from app.settings import Settings
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import WaitTimeout, wait_until
from tests.support.workers import E2E_PIPELINE_MODULES

START_TIMEOUT_SEC = 30.0
# An API that accepts triggers of the e2e pipelines (tests/support/e2e_pipelines.py), which
# the test workers run: a test module sets `API_ENV = E2E_PIPELINES_API_ENV` (e2e/conftest.py).
E2E_PIPELINES_API_ENV = {"DL_PIPELINE_MODULES": json.dumps([E2E_PIPELINE_MODULES])}


@dataclass
class ApiServer:
    """A running API process: where it answers and which database it uses."""

    base_url: str
    dsn: str
    process: subprocess.Popen[bytes]
    log_path: Path
    direct_dsn: str | None = None  # DATABASE_DIRECT_URL, when dsn is a pooler

    def log_tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return self.log_path.read_text(errors="replace")[-3000:]


def server_env(database_url: str, port: int, direct_url: str | None = None) -> dict[str, str]:
    """The caller's environment without any service setting, plus the server's own.

    `direct_url` becomes DATABASE_DIRECT_URL: set when `database_url` is a pooler.
    """
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env.update(
        {
            "DATABASE_URL": database_url,
            "APP_HOST": "127.0.0.1",
            "APP_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if direct_url is not None:
        env["DATABASE_DIRECT_URL"] = direct_url
    return env


async def start_api_server(
    database_url: str,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    *,
    direct_url: str | None = None,
) -> ApiServer:
    """Start the API and poll /health until it answers (or fail with the server's log).

    With `direct_url`, `database_url` may be a pooler (DATABASE_DIRECT_URL, see
    docs/connections.md).
    """
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=PROJECT_ROOT,
            env={**server_env(database_url, port, direct_url), **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ApiServer(f"http://127.0.0.1:{port}", database_url, process, log_path, direct_url)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:

        async def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"API exited with {process.returncode}:\n{server.log_tail()}")
            try:
                return (await client.get("/health")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await wait_until(healthy, timeout=START_TIMEOUT_SEC, what="the API to be healthy")
        except WaitTimeout:
            stop_api_server(server)
            raise RuntimeError(
                f"API not healthy in {START_TIMEOUT_SEC}s:\n{server.log_tail()}"
            ) from None
    return server


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
