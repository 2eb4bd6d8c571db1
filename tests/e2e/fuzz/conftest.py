"""One real API process on a fresh migrated database, shared by a fuzz test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.api_servers import ApiServer, api_server_on_fresh_database
from tests.support.databases import TestServer as PgServer


@pytest.fixture(scope="module")
async def fuzz_server(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """`python -m app serve` on its own migrated database; its log is shown on failure."""
    async with api_server_on_fresh_database(
        pg_server, template_db, tmp_path_factory.mktemp("fuzz"), prefix="dl_fuzz"
    ) as server:
        yield server
