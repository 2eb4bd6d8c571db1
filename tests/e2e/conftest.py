"""Fixtures of the e2e tier that several of its folders share (api/, cli/)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.api_servers import ApiServer, api_server_on_fresh_database
from tests.support.databases import TestServer as PgServer


@pytest.fixture(scope="module")
async def api_server(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """The API on a fresh migrated database, shared by one test module."""
    async with api_server_on_fresh_database(
        pg_server, template_db, tmp_path_factory.mktemp("api")
    ) as server:
        yield server
