"""GET /metrics: Prometheus text format, with job gauges read from the database per scrape."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency

from app.http.auth import requires
from app.http.dependencies import from_state
from app.observability.metrics import CONTENT_TYPE, JobGaugesReader, render


class MetricsController(Controller):
    """The scrape endpoint (left out of the OpenAPI schema)."""

    include_in_schema = False
    dependencies = from_state("job_gauges")

    @get("/metrics", media_type=CONTENT_TYPE, opt=requires("read"))
    async def metrics(self, job_gauges: NamedDependency[JobGaugesReader]) -> Response[bytes]:
        """This process's metrics and the job gauges; database_up 0 when it cannot answer."""
        gauges = await job_gauges.scrape()
        return Response(render(gauges), media_type=CONTENT_TYPE)
