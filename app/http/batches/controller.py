"""/api/v1/batches: a batch's counts and its completion callback."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.domain.batches import BatchView
from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.errors import error_response
from app.jobs.service import JobService

_ID = "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"
NOT_FOUND = error_response(404, "No batch has this id", f"batch {_ID} not found")
BAD_BATCH_ID = error_response(400, "The id is not a UUID", "batch_id 'abc' is not a UUID")
# The route takes any text and the handler a UUID, as the jobs' routes do: the guard answers
# first (401, 403), and a bad id is a 400 naming it rather than a routing miss.
BATCH_PATH = "/{batch_id:str}"


class BatchesController(Controller):
    """Batches made by bulk triggers with `on_complete` (docs/batches.md)."""

    path = "/api/v1/batches"
    tags = ["batches"]
    dependencies = from_state("job_service")

    @get(
        BATCH_PATH,
        summary="A batch: its jobs' counts by final status, and its callback once created",
        responses={400: BAD_BATCH_ID, 404: NOT_FOUND},
        opt=requires("read"),
    )
    async def get_batch(
        self, batch_id: FromPath[UUID], job_service: NamedDependency[JobService]
    ) -> BatchView:
        """`pending` jobs have not ended yet; `callback_job_id` is set when none is left."""
        return await job_service.batch(batch_id)
