"""Fixtures of the e2e tier that several of its folders share (api/, cli/)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.api_servers import ApiServer, api_server_on_fresh_database
from tests.support.databases import TestServer as PgServer


@pytest.fixture(scope="module")
async def api_server(
    pg_server: PgServer,
    template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[ApiServer]:
    """The API on a fresh migrated database, shared by one test module; the module's
    `API_ENV` (a dict, if it has one) adds to the API's environment."""
    async with api_server_on_fresh_database(
        pg_server,
        template_db,
        tmp_path_factory.mktemp("api"),
        extra_env=getattr(request.module, "API_ENV", None),
    ) as server:
        yield server
