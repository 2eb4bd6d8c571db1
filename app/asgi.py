"""create_app(): the Litestar application with its controllers, state and error mapping."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)

from app import __version__
from app.db.connections import api_pool
from app.db.engine import create_session_factory
from app.http.auth import (
    BEARER_SECURITY,
    OPEN_API_MESSAGE,
    TokenGuard,
    openapi_components,
    requires,
)
from app.http.batches.controller import BatchesController
from app.http.dashboard.controller import DashboardController, dashboard_static_router
from app.http.edge.security_headers import add_security_headers
from app.http.edge.shedding import InFlight, LoadSheddingMiddleware
from app.http.edge.stream_slots import StreamSlots
from app.http.errors import EXCEPTION_HANDLERS
from app.http.jobs.controller import JobsController
from app.http.jobs.stream_controller import JobStreamController
from app.http.json_body import JsonBodyRequest
from app.http.queues.controller import QueuesController
from app.http.request_id import RequestIdLogMiddleware, add_request_id_header
from app.http.schedules.controller import SchedulesController
from app.http.schedules.cron_controller import CronController
from app.http.system.controller import SystemController
from app.http.system.metrics_controller import MetricsController
from app.http.workers.controller import WorkersController
from app.http.workflows.controller import WorkflowsController
from app.jobs.job_gauges import read_job_gauges
from app.jobs.job_watch import JobWatch
from app.jobs.queue_service import QueueService
from app.jobs.schedule_service import ScheduleService
from app.jobs.service import JobService
from app.jobs.worker_registry import WorkerRegistry
from app.jobs.workflow_service import WorkflowService
from app.observability.http_metrics import HttpMetricsMiddleware
from app.observability.http_tracing import HttpTracingMiddleware
from app.observability.metrics import JobGaugesReader
from app.observability.tracing import configure_tracing
from app.pipelines.registry import load_pipelines
from app.settings import Settings, get_settings

logger = logging.getLogger("app.http")


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the API; the engine opens on start-up and closes on shutdown."""
    settings = settings or get_settings()
    load_pipelines(settings.dl_pipeline_modules)
    guard = TokenGuard.from_settings(settings)
    in_flight = InFlight(settings.app_max_concurrent_requests, settings.app_busy_retry_after_sec)
    # Off unless OTEL_* variables turn it on (docs/tracing.md): then no middleware at all.
    tracer = configure_tracing("dataloader-api")
    tracing = [] if tracer is None else [DefineMiddleware(HttpTracingMiddleware, tracer=tracer)]
    stream_slots = StreamSlots(
        settings.app_stream_max,
        settings.app_stream_max_per_token,
        settings.app_busy_retry_after_sec,
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = api_pool(settings)
        # Controllers receive these attributes by name (app.http.dependencies.from_state).
        app.state.settings = settings
        if not guard.enabled:
            logger.warning(OPEN_API_MESSAGE)
        app.state.started_monotonic = time.monotonic()
        sessions = create_session_factory(engine)
        job_service = JobService(sessions, settings)
        app.state.job_service = job_service
        # Listens while stream clients are connected (see app.jobs.job_watch).
        job_watch = JobWatch(sessions, settings.session_dsn, settings.pg_schema_queue)
        app.state.job_watch = job_watch
        app.state.stream_slots = stream_slots
        app.state.schedule_service = ScheduleService(sessions, settings)
        app.state.queue_service = QueueService(sessions, settings)
        app.state.workflow_service = WorkflowService(sessions, settings)
        app.state.worker_registry = WorkerRegistry.from_settings(settings, sessions)
        app.state.job_gauges = JobGaugesReader(lambda: read_job_gauges(sessions))
        reload_tokens_on_sighup = guard.reloadable and _watch_sighup(guard.reload)
        try:
            yield
        finally:
            if reload_tokens_on_sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await job_watch.close()
            await job_service.close()
            await engine.dispose()

    return Litestar(
        route_handlers=[
            DashboardController,
            dashboard_static_router(),
            JobStreamController,
            JobsController,
            MetricsController,
            QueuesController,
            BatchesController,
            SchedulesController,
            CronController,
            SystemController,
            WorkersController,
            WorkflowsController,
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        # Every handler declares its scope (app.http.auth); the guard checks the token.
        guards=[guard],
        # Shedding first: a refused request costs no more than its 503 (app.http.edge).
        middleware=[
            DefineMiddleware(LoadSheddingMiddleware, in_flight=in_flight),
            RequestIdLogMiddleware,
            *tracing,
            HttpMetricsMiddleware,
        ],
        # Every answer carries X-Request-ID (app.http.request_id) and the security headers
        # (app.http.edge), errors and routing misses included.
        before_send=[add_request_id_header, add_security_headers],
        # Bodies decode with the duplicate-key and surrogate checks (app.http.json_body).
        request_class=JsonBodyRequest,
        # Logging is set up by app.observability.logging (uvicorn's log config), not here.
        logging_config=None,
        request_max_body_size=settings.app_max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Dataloader job service",
            version=__version__,
            components=openapi_components(),
            security=BEARER_SECURITY,
            # Only the UIs docs/api.md names, so their CSP lists only their CDNs
            # (app.http.edge.security_headers); /schema itself is ReDoc, as before.
            render_plugins=[
                RedocRenderPlugin(path=["/", "/redoc"]),
                SwaggerRenderPlugin(),
                JsonRenderPlugin(),
                YamlRenderPlugin(),
            ],
            # The document describes the API and holds no data: open, so clients can find
            # out how to authenticate.
            openapi_router=Router(
                path="/schema", route_handlers=[], opt=requires("open"), include_in_schema=False
            ),
        ),
    )


def _watch_sighup(handler: Callable[[], None]) -> bool:
    """Run `handler` on SIGHUP (the token file's reload); False where signals cannot be had.

    Only the main thread of a process may take signals: an app served from another thread
    (an in-process test client) reloads on change only.
    """
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, handler)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True
