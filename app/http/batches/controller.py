"""/api/v1/batches: a batch's counts and its completion callback."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.domain.batches import BatchView
from app.http.auth import requires
from app.http.dependencies import from_state
from app.jobs.service import JobService


class BatchesController(Controller):
    """Batches made by bulk triggers with `on_complete` (docs/batches.md)."""

    path = "/api/v1/batches"
    tags = ["batches"]
    dependencies = from_state("job_service")

    @get(
        "/{batch_id:uuid}",
        summary="A batch: its jobs' counts by final status, and its callback once created",
        opt=requires("read"),
    )
    async def get_batch(
        self, batch_id: FromPath[UUID], job_service: NamedDependency[JobService]
    ) -> BatchView:
        """`pending` jobs have not ended yet; `callback_job_id` is set when none is left."""
        return await job_service.batch(batch_id)
