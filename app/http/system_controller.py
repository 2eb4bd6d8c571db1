"""/health, /ready and /info."""

from __future__ import annotations

import time

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from app import __version__
from app.http.auth import requires
from app.http.schemas import HealthResponse, InfoResponse, ReadyResponse
from app.jobs.service import JobService

READY_TIMEOUT_SEC = 2.0


class SystemController(Controller):
    """Probes for orchestrators and people."""

    tags = ["system"]

    @get("/health", summary="Liveness (no database)", opt=requires("open"), security=[{}])
    async def health(self) -> HealthResponse:
        """The process is up."""
        return HealthResponse()

    @get(
        "/ready",
        summary="Readiness: the database answers",
        responses={},
        opt=requires("open"),
        security=[{}],
    )
    async def ready(self, state: State) -> Response[ReadyResponse]:
        """200 when the database answers within a short timeout, else 503."""
        import asyncio

        service: JobService = state.job_service
        try:
            ok = await asyncio.wait_for(service.database_ready(), READY_TIMEOUT_SEC)
        except Exception:  # any failure to reach the database means not ready
            ok = False
        if ok:
            return Response(ReadyResponse(status="ready", database="ok"), status_code=HTTP_200_OK)
        return Response(
            ReadyResponse(status="unavailable", database="unreachable"),
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
        )

    @get("/info", summary="Service name, version, environment and uptime", opt=requires("read"))
    async def info(self, state: State) -> InfoResponse:
        """What is running, and since when."""
        return InfoResponse(
            service="dataloader",
            version=__version__,
            environment=state.settings.app_env,
            uptime_sec=round(time.monotonic() - state.started_monotonic, 3),
        )
