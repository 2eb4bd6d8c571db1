"""/health, /ready and /info."""

from __future__ import annotations

import asyncio
import time

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from app import __version__
from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.edge.shedding import never_shed
from app.http.system.schemas import Health, Info, Readiness
from app.jobs.service import JobService
from app.settings import Settings

READY_TIMEOUT_SEC = 2.0


class SystemController(Controller):
    """Probes for orchestrators and people."""

    tags = ["system"]
    dependencies = from_state("job_service", "settings", "started_monotonic")

    # The probes are answered however busy the process is (app.http.edge.shedding).
    @get(
        "/health",
        summary="Liveness (no database)",
        opt=requires("open") | never_shed(),
        security=[{}],
    )
    async def health(self) -> Health:
        """The process is up."""
        return Health()

    @get(
        "/ready",
        summary="Readiness: the database answers",
        responses={},
        opt=requires("open") | never_shed(),
        security=[{}],
    )
    async def ready(self, job_service: NamedDependency[JobService]) -> Response[Readiness]:
        """200 when the database answers within a short timeout, else 503."""
        try:
            ok = await asyncio.wait_for(job_service.database_ready(), READY_TIMEOUT_SEC)
        except Exception:  # any failure to reach the database means not ready
            ok = False
        if ok:
            return Response(Readiness(status="ready", database="ok"), status_code=HTTP_200_OK)
        return Response(
            Readiness(status="unavailable", database="unreachable"),
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
        )

    @get("/info", summary="Service name, version, environment and uptime", opt=requires("read"))
    async def info(
        self, settings: NamedDependency[Settings], started_monotonic: NamedDependency[float]
    ) -> Info:
        """What is running, and since when."""
        return Info(
            service="dataloader",
            version=__version__,
            environment=settings.app_env,
            uptime_sec=round(time.monotonic() - started_monotonic, 3),
        )
