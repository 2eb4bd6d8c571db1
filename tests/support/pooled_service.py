"""The API and workers with DATABASE_URL through a pooler and DATABASE_DIRECT_URL direct.

As docs/connections.md tells operators behind PgBouncer in transaction mode: the pooled
connections (API pool, worker pool, finish writer) go through the pooler, the ones that need
a session (pgqueuer, the lock session, the job watch, migrations) to PostgreSQL itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.db.engine import create_engine
from app.settings import load_settings
from tests.support.api_servers import ApiServer, start_api_server, stop_api_server
from tests.support.jobs_db import JobsDb
from tests.support.paths import PROJECT_ROOT
from tests.support.pgbouncer import PgBouncer
from tests.support.workers import WorkerFleet, worker_fleet


@dataclass
class PooledService:
    """The pooler, the API processes and the workers of one database, and a view of it."""

    bouncer: PgBouncer
    direct_dsn: str  # the database itself
    pooled_dsn: str  # the same database through the pooler
    apis: list[ApiServer]
    fleet: WorkerFleet
    jobs_db: JobsDb  # the test's own connections, direct

    @property
    def api(self) -> ApiServer:
        """The first API process."""
        return self.apis[0]

    def diagnostics(self) -> Callable[[], str]:
        """What to show when a wait fails: worker, API and pooler logs."""

        def collect() -> str:
            return "\n".join(
                [
                    self.fleet.diagnostics(),
                    *(api.log_tail() for api in self.apis),
                    self.bouncer.log_tail(),
                ]
            )

        return collect


@contextlib.asynccontextmanager
async def pooled_service(
    bouncer: PgBouncer,
    direct_dsn: str,
    log_dir: Path,
    *,
    api_processes: int = 1,
    api_env: Mapping[str, str] | None = None,
    worker_env: Mapping[str, str] | None = None,
) -> AsyncIterator[PooledService]:
    """API processes on `direct_dsn`'s database through `bouncer`, and an empty worker fleet.

    The caller starts the workers (`service.fleet.start`); all stop when the block exits.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    pooled_dsn = bouncer.route(direct_dsn)
    settings = load_settings(database_url=direct_dsn)
    engine = create_engine(settings, pool_size=3)
    apis: list[ApiServer] = []
    try:
        for index in range(api_processes):
            apis.append(
                await start_api_server(
                    pooled_dsn,
                    log_dir / f"api-{index + 1}.log",
                    dict(api_env or {}),
                    direct_url=direct_dsn,
                )
            )
        with worker_fleet(
            PROJECT_ROOT, pooled_dsn, log_dir / "workers", env=worker_env, direct_dsn=direct_dsn
        ) as fleet:
            yield PooledService(
                bouncer=bouncer,
                direct_dsn=direct_dsn,
                pooled_dsn=pooled_dsn,
                apis=apis,
                fleet=fleet,
                jobs_db=JobsDb(engine=engine, settings=settings),
            )
    finally:
        for api in apis:
            stop_api_server(api)
        await engine.dispose()
