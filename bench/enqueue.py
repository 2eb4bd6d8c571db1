"""Creating `noop` jobs in-app through the project's enqueue path, in batches.

One `enqueue_many_in_session` statement per batch.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_engine, create_session_factory
from app.domain.fairness import QueueFairness
from app.domain.rate_limits import QueueLimits
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_many_in_session
from app.jobs.queue_service import QueueService
from app.settings import Settings, load_settings
from bench.server import QUEUE_SCHEMA

QUEUE = "bench"
TASK = "noop"


ENQUEUE_PATH = "enqueue_many_in_session"


def noop_spec(
    lock_key: str, rate_key: str | None = None, partition_key: str | None = None
) -> JobCreate:
    """A zero-sleep noop job."""
    return JobCreate(
        queue=QUEUE,
        task=TASK,
        lock_key=lock_key,
        args={},
        rate_key=rate_key,
        partition_key=partition_key,
    )


def trigger_body(lock_key: str) -> dict[str, Any]:
    """The JSON body of `POST /api/v1/jobs/trigger` for the same job."""
    return {"queue": QUEUE, "task": TASK, "lock_key": lock_key, "args": {}}


def trigger_bytes(lock_key: str) -> bytes:
    """`trigger_body` encoded."""
    return json.dumps(trigger_body(lock_key), separators=(",", ":")).encode()


@dataclass
class InApp:
    """A SQLAlchemy engine on one database, for enqueueing from the benchmark process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    async def set_limits(self, limits: QueueLimits) -> None:
        """The bench queue's rate limits, as `PUT /api/v1/queues/bench/limits` sets them."""
        await QueueService(self.sessions, self.settings).set_limits(QUEUE, limits)

    async def set_fairness(self, fair: bool) -> None:
        """Make the bench queue fair by partition_key, or not (`PUT .../fairness`)."""
        fairness = QueueFairness(by="partition_key" if fair else None)
        await QueueService(self.sessions, self.settings).set_fairness(QUEUE, fairness)

    async def enqueue(
        self,
        count: int,
        per_transaction: int,
        prefix: str,
        rate_keys: int = 0,
        tenants: int = 0,
        tenant: str | None = None,
    ) -> None:
        """`count` noop jobs with lock_keys `<prefix>-<n>`, `per_transaction` per commit;
        with `rate_keys`, each names one of that many rate keys in turn; with `tenants`,
        one of that many partition_keys in turn, else `tenant` (or none)."""
        for start in range(0, count, per_transaction):
            end = min(count, start + per_transaction)
            specs = [
                noop_spec(
                    f"{prefix}-{n}",
                    f"key-{n % rate_keys}" if rate_keys else None,
                    f"tenant-{n % tenants}" if tenants else tenant,
                )
                for n in range(start, end)
            ]
            async with self.sessions() as session, session.begin():
                await enqueue_many_in_session(session, specs, self.settings)


@asynccontextmanager
async def in_app(dsn: str) -> AsyncIterator[InApp]:
    """An `InApp` on `dsn`, disposed afterwards."""
    settings = load_settings(database_url=dsn, pg_schema_queue=QUEUE_SCHEMA)
    engine = create_engine(settings)
    try:
        yield InApp(settings, engine, create_session_factory(engine))
    finally:
        await engine.dispose()
