"""One real API process on a fresh migrated database, shared by a fuzz test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.api.conftest import ApiServer, start_api_server, stop_api_server
from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name


@pytest.fixture(scope="module")
async def fuzz_server(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """`python -m app serve` on its own migrated database; its log is shown on failure."""
    name = unique_name("dl_fuzz")
    dsn = await create_database(pg_server, name, template=template_db)
    server = await start_api_server(dsn, tmp_path_factory.mktemp("fuzz") / "server.log")
    try:
        yield server
    finally:
        stop_api_server(server)
        await drop_database(pg_server, name)
