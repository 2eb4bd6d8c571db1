"""Fixtures of the API tests: a client of the module's `python -m app serve` and its database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from app.devserver.embedded_postgres import free_port
from tests.support.api_servers import ApiServer, start_api_server, stop_api_server


@pytest.fixture
async def client(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client aimed at the module's API server."""
    async with httpx.AsyncClient(base_url=api_server.base_url, timeout=30) as client:
        yield client
    assert api_server.process.poll() is None, f"API died:\n{api_server.log_tail()}"


@pytest.fixture
async def api_db(api_server: ApiServer) -> AsyncIterator[asyncpg.Connection]:
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
