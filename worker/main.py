"""`pgq run worker.main:factory`: one pgqueuer entrypoint per configured queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pgqueuer import QueueManager
from pgqueuer.models import Context, Job

from app.jobs.connections import pgqueuer_queries, worker_sessions
from app.jobs.fair_rounds import FairRounds
from app.jobs.manager import JobManager
from app.jobs.membership import Membership, MembershipConfig
from app.jobs.results import JobResults
from app.jobs.schedule_firing import CHANGES_CHANNEL as SCHEDULE_CHANGES_CHANNEL
from app.jobs.schedule_sync import sync_declared_schedules
from app.jobs.wake_gate import WakeGate
from app.jobs.worker_registry import WorkerRegistry
from app.observability.logging import configure_logging
from app.observability.metrics import start_metrics_server, worker_metrics
from app.observability.tracing import tracing_or_exit
from app.pipelines import rabbitmq_publish
from app.pipelines.loading import pipelines_or_exit
from app.pipelines.registry import declared_schedules, registered_tasks
from app.settings import settings_or_exit
from worker.finish_writer import FinishWriter
from worker.identity import worker_id
from worker.lock_liveness import LockLiveness
from worker.lock_session import LockSession
from worker.maintenance.config import MaintenanceConfig
from worker.maintenance.fair_rounds import FairRoundsService
from worker.maintenance.leader import MaintenanceLeader
from worker.maintenance.reaper import Reaper
from worker.maintenance.retention import Retention
from worker.maintenance.scheduler import Scheduler
from worker.queue_manager import JitteredQueueManager
from worker.runner import Runner

logger = logging.getLogger("worker")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _drain_then_interrupt(
    pgq: QueueManager, runner: Runner, timeout_sec: float, signalled: asyncio.Event
) -> None:
    """Once the run ends, let running jobs finish for `timeout_sec`, then interrupt them."""
    # pgq run swaps pgq.shutdown for its own event after start, so read the attribute anew.
    while not pgq.shutdown.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    if signalled.is_set():
        # Someone is waiting at a terminal: say how long, and how to stop waiting.
        logger.info(
            "shutting down: draining %d running job(s) for up to %g s (DL_SHUTDOWN_TIMEOUT_SEC);"
            " press Ctrl-C again (or send SIGTERM again) to stop them now: they are queued"
            " again without spending an attempt",
            len(runner.active),
            timeout_sec,
        )
    else:
        # No stop signal: pgqueuer's run failed (the database went away) and is restarted.
        logger.warning(
            "run failed: letting %d running job(s) finish before the restart",
            len(runner.active),
        )
    await asyncio.sleep(timeout_sec)
    runner.interrupt_all()


def _second_signal_stops_now(pgq: QueueManager, runner: Runner, signalled: asyncio.Event) -> None:
    """First SIGTERM/SIGINT drains; a second one interrupts running jobs at once."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if pgq.shutdown.is_set():
            runner.interrupt_all()
        signalled.set()
        pgq.shutdown.set()

    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)


def _stop_signals_end_the_process() -> None:
    """Between two runs (`--restart-on-failure`) no job runs: a stop signal ends the process.

    The handlers above belong to a run that is over; left in place they would stop a run
    that no longer exists, and the next run would start anyway.
    """
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)


def _warn_without_restart() -> None:
    """A worker that is not restarted after losing the database stays down with it."""
    if "--restart-on-failure" not in sys.argv:
        logger.warning(
            "running without --restart-on-failure: this worker exits when it loses the"
            " database; start it as `pgq run --restart-on-failure worker.main:factory`"
        )


_metrics_server_started = False


def _serve_metrics_once(host: str, port: int) -> None:
    """The metrics endpoint lives as long as the process, across restarted runs."""
    global _metrics_server_started
    if not _metrics_server_started:
        start_metrics_server(host, port)
        _metrics_server_started = True


@asynccontextmanager
async def factory() -> AsyncIterator[QueueManager]:
    """Build the worker: pgqueuer entrypoints, the attempt runner, the maintenance leader.

    Entered again for each run under `pgq run --restart-on-failure`: whatever a run (or a
    start that failed half-way, the database still down) opened is closed when it ends.
    """
    settings = settings_or_exit("dataloader worker")
    ident = worker_id(settings)
    configure_logging(settings, process="worker", ident=ident, id_field="worker_id")
    # Off unless OTEL_* variables turn it on (docs/tracing.md); read once per process.
    tracer = tracing_or_exit("dataloader worker", "dataloader-worker")
    # Before any other line: a module that does not import is the one thing to say.
    pipelines_or_exit("dataloader worker", settings.dl_pipeline_modules)
    _warn_without_restart()
    worker_metrics()  # the families exist (at zero) from the first scrape on
    _serve_metrics_once(settings.worker_metrics_host, settings.worker_metrics_port)
    schema = settings.pg_schema_queue
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(_stop_signals_end_the_process)
        stack.push_async_callback(rabbitmq_publish.close_connection)
        # Starts and finishes have connections of their own; the pool serves heartbeats,
        # retries, postponements and maintenance, so it need not grow with concurrency.
        sessions = await worker_sessions(stack, settings, ident)
        await sync_declared_schedules(sessions, declared_schedules())
        liveness = LockLiveness.for_heartbeat(settings.dl_heartbeat_sec)
        locks = LockSession(settings.session_dsn, schema, ident, liveness=liveness)
        await locks.open()
        stack.push_async_callback(locks.close)
        finishes = FinishWriter(settings.asyncpg_dsn, locks, pooled=settings.behind_pooler)
        await finishes.open()
        stack.push_async_callback(finishes.close)
        served = {queue.queue: queue.concurrency for queue in settings.workers_json}
        # A new job wakes about one worker, not all of them (app.jobs.wake_gate); the gate
        # ranks this worker among the live ones serving a queue, which membership keeps.
        gate = WakeGate(ident, served)
        tasks = registered_tasks()
        membership = Membership(
            sessions,
            ident,
            served,
            gate,
            MembershipConfig(refresh_sec=settings.dl_worker_refresh_sec),
            tasks=tasks,
        )
        # The registry (/api/v1/workers, /api/v1/tasks) learns this worker's version and
        # tasks here, once; the periodic refresh writes only that it lives.
        await membership.register()
        stack.push_async_callback(membership.leave)
        logger.info(
            "worker %s registered: queues %s; tasks %s",
            ident,
            ", ".join(f"{q.queue} (concurrency {q.concurrency})" for q in settings.workers_json),
            ", ".join(tasks),
            extra={"queues": served, "tasks": list(tasks)},
        )
        queries = await pgqueuer_queries(stack, settings, ident, gate)
        # A QueueManager, not a PgQueuer: PgQueuer also runs pgqueuer's own scheduler (we
        # have ours) and, when either fails, cancels the other, and with it every running
        # job, before their final writes. A QueueManager that fails lets them finish.
        pgq = JitteredQueueManager(queries)
        registry = WorkerRegistry.from_settings(settings, sessions)
        runner = Runner(
            settings,
            JobManager.from_settings(settings, sessions),
            locks,
            finishes,
            ident,
            task_holders=registry.holders_of_task,
            results=JobResults(sessions),
            tracer=tracer,
        )
        locks.on_locks_lost = runner.interrupt_jobs
        # Jobs running per queue: a worker without a free slot leaves a new job to others.
        # A queue's concurrency is a fleet-wide limit (this worker alone may reach it); 0
        # sets none, so such a queue always has room here.
        busy: Counter[str] = Counter()
        gate.has_free_slot = lambda queue: not served.get(queue) or busy[queue] < served[queue]

        async def handle(job: Job, ctx: Context) -> None:
            """Every queue's entrypoint: the payload is the dl_jobs id."""
            if job.payload is None:
                return
            busy[job.entrypoint] += 1
            try:
                await runner.run_dispatch(
                    uuid.UUID(bytes=job.payload), int(job.id), ctx.cancellation
                )
            finally:
                busy[job.entrypoint] -= 1

        for queue in settings.workers_json:
            pgq.entrypoint(queue.queue, concurrency_limit=queue.concurrency, accepts_context=True)(
                handle
            )

        config = MaintenanceConfig.from_settings(settings)
        scheduler = Scheduler(sessions, settings, ident, config.scheduler, tracer=tracer)
        # On pgqueuer's connection, which LISTENs anyway: a notice costs no statement. It
        # goes with that connection when the run fails, and this run's successor listens
        # again; meanwhile the scheduler's period bounds how late a change is seen.
        await queries.driver.add_listener(SCHEDULE_CHANGES_CHANNEL, scheduler.notice_received)
        maintenance = MaintenanceLeader(
            # The leader lock lives on pgqueuer's session (app.jobs.leadership): no
            # connection of its own, and the election costs a non-leader one statement.
            session=queries.driver,
            # Started in this order when a term begins: it begins with a reaper pass.
            services=[
                Reaper(
                    JobManager.from_settings(settings, sessions), config.reaper, worker_id=ident
                ),
                scheduler,
                Retention(sessions, config.retention),
                FairRoundsService(FairRounds(sessions, schema), config.reaper.period_sec),
            ],
            config=config.leader,
        )
        signalled = asyncio.Event()
        background = [
            asyncio.create_task(maintenance.run()),
            asyncio.create_task(membership.run()),
            asyncio.create_task(
                _drain_then_interrupt(pgq, runner, settings.dl_shutdown_timeout_sec, signalled)
            ),
        ]
        stack.push_async_callback(_stop_background, maintenance, background)
        _second_signal_stops_now(pgq, runner, signalled)
        logger.info(
            "worker %s serving %s",
            ident,
            ", ".join(f"{q.queue}x{q.concurrency}" for q in settings.workers_json),
        )
        yield pgq


async def _stop_background(maintenance: MaintenanceLeader, tasks: list[asyncio.Task[None]]) -> None:
    """End the maintenance leader (it stops its services and resigns), the membership
    refresh and the drain watcher."""
    maintenance.stopped.set()
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
