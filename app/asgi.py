"""create_app(): the Litestar application with its controllers, state and error mapping."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from app import __version__
from app.db.engine import create_engine, create_session_factory
from app.http.errors import EXCEPTION_HANDLERS
from app.http.jobs_controller import JobsController
from app.http.schedules_controller import SchedulesController
from app.http.system_controller import SystemController
from app.jobs.schedule_service import ScheduleService
from app.jobs.service import JobService
from app.pipelines.registry import load_pipelines
from app.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the API; the engine opens on start-up and closes on shutdown."""
    settings = settings or get_settings()
    load_pipelines(settings.dl_pipeline_modules)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.settings = settings
        app.state.started_monotonic = time.monotonic()
        sessions = create_session_factory(engine)
        job_service = JobService(sessions, settings)
        app.state.job_service = job_service
        app.state.schedule_service = ScheduleService(sessions, settings)
        try:
            yield
        finally:
            await job_service.close()
            await engine.dispose()

    return Litestar(
        route_handlers=[JobsController, SchedulesController, SystemController],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.app_max_body_bytes,
        openapi_config=OpenAPIConfig(title="Dataloader job service", version=__version__),
    )
