"""Bare pgqueuer, the peer baseline: `pgq run bench.peer_worker:factory` with a no-op entrypoint.

No dl_jobs, no locks, no leases: only what pgqueuer itself does per job. Reads DATABASE_URL.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.models import Job

ENTRYPOINT = "bench_peer"

logger = logging.getLogger("bench.peer_worker")


@asynccontextmanager
async def factory() -> AsyncIterator[PgQueuer]:
    """A PgQueuer on one asyncpg connection with one async no-op entrypoint."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    dsn = re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", os.environ["DATABASE_URL"])
    connection = await asyncpg.connect(dsn)
    pgq = PgQueuer(AsyncpgDriver(connection))
    # The same fleet-wide limit as the project's workers get, read from the same setting.
    queues = json.loads(os.environ.get("WORKERS_JSON") or "[{}]")
    concurrency = int(queues[0].get("concurrency", 0))

    @pgq.entrypoint(ENTRYPOINT, concurrency_limit=concurrency)
    async def noop(job: Job) -> None:
        """Do nothing: the cost measured is pgqueuer's own."""

    logger.info("peer worker serving %s (concurrency limit %d)", ENTRYPOINT, concurrency)
    try:
        yield pgq
    finally:
        await connection.close()
