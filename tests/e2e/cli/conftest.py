"""Fixtures of the CLI tests: `dataloader` against the module's real API (and a worker)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.api_servers import ApiServer
from tests.support.cli_runner import WORKER_QUEUE, Cli
from tests.support.paths import PROJECT_ROOT
from tests.support.workers import WorkerFleet, worker_fleet

# Progress is saved on each heartbeat; a short one lets --wait see steps as they happen.
WORKER_ENV = {"DL_HEARTBEAT_SEC": "0.3"}


@pytest.fixture
def cli(api_server: ApiServer) -> Cli:
    """`dataloader` aimed at the module's API server."""
    return Cli(api_server.base_url)


@pytest.fixture
async def api(api_server: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client on the same server, to set things up and check results."""
    async with httpx.AsyncClient(base_url=api_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def worker(
    api_server: ApiServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkerFleet]:
    """One real `pgq run` worker on the module's database, serving etl.default."""
    with worker_fleet(
        PROJECT_ROOT, api_server.dsn, tmp_path_factory.mktemp("cli_workers"), env=WORKER_ENV
    ) as fleet:
        await fleet.start_ready("cli-w1", queues={WORKER_QUEUE: 4})
        yield fleet
