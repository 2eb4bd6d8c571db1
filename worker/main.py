"""`pgq run worker.main:factory`: one pgqueuer entrypoint per configured queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.models import Job

from app.db.engine import create_engine, create_session_factory
from app.db.pgqueuer_schema import pgqueuer_settings, queries_for
from app.jobs.schedule_sync import sync_declared_schedules
from app.observability.logging import configure_logging
from app.observability.metrics import start_metrics_server, worker_metrics
from app.pipelines import rabbitmq_publish
from app.pipelines.registry import declared_schedules, load_pipelines
from app.settings import settings_or_exit
from worker.finish_writer import FinishWriter
from worker.identity import worker_id
from worker.lock_session import LockSession
from worker.maintenance.leader import MaintenanceLoop
from worker.maintenance.reaper import Reaper
from worker.maintenance.retention import Retention
from worker.maintenance.scheduler import Scheduler
from worker.runner import Runner

logger = logging.getLogger("worker")


async def _drain_then_interrupt(pgq: PgQueuer, runner: Runner, timeout_sec: float) -> None:
    """Once shutdown starts, let running jobs finish for `timeout_sec`, then interrupt them."""
    # pgq run swaps pgq.shutdown for its own event after start, so read the attribute anew.
    while not pgq.shutdown.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    logger.info("shutting down: draining %d running job(s)", len(runner.active))
    await asyncio.sleep(timeout_sec)
    runner.interrupt_all()


def _second_signal_stops_now(pgq: PgQueuer, runner: Runner) -> None:
    """First SIGTERM/SIGINT drains; a second one interrupts running jobs at once."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if pgq.shutdown.is_set():
            runner.interrupt_all()
        pgq.shutdown.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)


@asynccontextmanager
async def factory() -> AsyncIterator[PgQueuer]:
    """Build the worker: pgqueuer entrypoints, the attempt runner, the maintenance loop."""
    settings = settings_or_exit("dataloader worker")
    ident = worker_id(settings)
    configure_logging(settings, process="worker", ident=ident, id_field="worker_id")
    worker_metrics()  # the families exist (at zero) from the first scrape on
    metrics_server = start_metrics_server(
        settings.worker_metrics_host, settings.worker_metrics_port
    )
    load_pipelines(settings.dl_pipeline_modules)
    schema = settings.pg_schema_queue
    # Starts and finishes share the lock session's one connection; the pool serves only
    # heartbeats, retries and postponements, so it need not grow with concurrency.
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    await sync_declared_schedules(sessions, declared_schedules())
    locks = LockSession(settings.asyncpg_dsn, schema, ident)
    await locks.open()
    finishes = FinishWriter(settings.asyncpg_dsn, locks)
    await finishes.open()
    connection = await asyncpg.connect(settings.asyncpg_dsn)
    queries = queries_for(connection, pgqueuer_settings(schema))
    pgq = PgQueuer(AsyncpgDriver(connection), queries=queries)
    runner = Runner(settings, engine, sessions, locks, finishes, ident)
    locks.on_locks_lost = runner.interrupt_jobs

    async def handle(job: Job, ctx: Any) -> None:
        """Every queue's entrypoint: the payload is the dl_jobs id."""
        if job.payload is None:
            return
        await runner.run_dispatch(uuid.UUID(bytes=job.payload), int(job.id), ctx.cancellation)

    for queue in settings.workers_json:
        pgq.entrypoint(queue.queue, concurrency_limit=queue.concurrency, accepts_context=True)(
            handle
        )

    # Maintenance has a pool of its own: behind a flood of runner writes the leader could
    # wait long enough for its idle leader session to be closed, and lose leadership.
    maintenance_engine = create_engine(settings, pool_size=2)
    maintenance_sessions = create_session_factory(maintenance_engine)
    maintenance = MaintenanceLoop(
        dsn=settings.asyncpg_dsn,
        reaper=Reaper(maintenance_sessions, schema, worker_id=ident),
        scheduler=Scheduler(maintenance_sessions, settings, ident),
        period_sec=settings.dl_reaper_period_sec,
        schedule_period_sec=settings.dl_schedule_period_sec,
        retention=Retention.from_settings(maintenance_sessions, settings),
        retention_period_sec=settings.dl_retention_period_sec,
    )
    background = [
        asyncio.create_task(maintenance.run()),
        asyncio.create_task(_drain_then_interrupt(pgq, runner, settings.dl_shutdown_timeout_sec)),
    ]
    _second_signal_stops_now(pgq, runner)
    logger.info(
        "worker %s serving %s",
        ident,
        ", ".join(f"{q.queue}x{q.concurrency}" for q in settings.workers_json),
    )
    try:
        yield pgq
    finally:
        maintenance.stopped.set()
        for task in background[1:]:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await finishes.close()
        await locks.close()
        await connection.close()
        await engine.dispose()
        await maintenance_engine.dispose()
        await rabbitmq_publish.close_connection()
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.shutdown)
            metrics_server.server_close()
