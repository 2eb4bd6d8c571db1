"""The service behind PgBouncer in transaction mode, shared by one test module.

DATABASE_URL reaches the module's database through a PgBouncer of the module's own (started
from docs/pgbouncer-example.md), DATABASE_DIRECT_URL reaches PostgreSQL itself; the API and
three workers run with both, as docs/connections.md tells operators to.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.databases import TestServer as PgServer
from tests.support.databases import create_database, drop_database, unique_name
from tests.support.pgbouncer import PgBouncer, pgbouncer_in_front
from tests.support.pooled_service import PooledService, pooled_service
from tests.support.workers import E2E_PIPELINE_MODULES

# Queues the module's workers serve (concurrency across the fleet).
WORKER_QUEUES = {"etl.default": 4, "etl.pooler-pause": 1, "etl.pooler-locks": 6}
WORKERS = 3
# Fewer server connections than pooled clients (3 workers x 2 + the API's 4): PgBouncer
# must share them, as in production.
POOL_SIZE = 4
# The API accepts only tasks it knows: the test pipelines too (the workers load them already).
API_ENV = {"DL_PIPELINE_MODULES": json.dumps([E2E_PIPELINE_MODULES])}


@pytest.fixture(scope="module")
async def bouncer(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the session's server."""
    async with pgbouncer_in_front(
        pg_server.admin_dsn, tmp_path_factory.mktemp("pgbouncer"), default_pool_size=POOL_SIZE
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def service(
    bouncer: PgBouncer,
    pg_server: PgServer,
    template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PooledService]:
    """The API and three workers on a fresh database, pooled connections through PgBouncer."""
    name = unique_name("dl_pooler")
    direct = await create_database(pg_server, name, template=template_db)
    try:
        async with pooled_service(
            bouncer, direct, tmp_path_factory.mktemp("pooled_service"), api_env=API_ENV
        ) as running:
            for index in range(WORKERS):
                running.fleet.start(f"pool-w{index + 1}", queues=WORKER_QUEUES)
            for worker in running.fleet.workers:
                await running.fleet.wait_ready(worker)
            yield running
    finally:
        await drop_database(pg_server, name)


@pytest.fixture
async def client(service: PooledService) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the module's API; the API must still be up afterwards."""
    async with httpx.AsyncClient(base_url=service.api.base_url, timeout=30) as http:
        yield http
    assert service.api.process.poll() is None, f"API died:\n{service.api.log_tail()}"
