"""/api/v1/jobs: trigger, status and cancel."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_200_OK, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from app.http.dependencies import provide_job_service
from app.http.schemas import (
    JobBulkTriggerRequest,
    JobBulkTriggerResponse,
    JobStatusResponse,
    JobTriggerRequest,
    JobTriggerResponse,
)
from app.jobs.errors import InvalidJobError
from app.jobs.service import JobService


class JobsController(Controller):
    """Create, look at and cancel jobs."""

    path = "/api/v1/jobs"
    tags = ["jobs"]
    # Not named "jobs": Litestar mistakes a body field of the same name for the dependency.
    dependencies = {"job_service": Provide(provide_job_service, sync_to_thread=False)}

    @post(
        "/trigger",
        status_code=HTTP_200_OK,
        summary="Create a job, or return the one with the same idempotency_key",
        raises=[],
    )
    async def trigger(
        self, request: Request[Any, Any, Any], data: JobTriggerRequest, job_service: JobService
    ) -> JobTriggerResponse:
        """Create a job in one transaction: dl_jobs row, event and pgqueuer dispatch."""
        require_json(request)
        return await job_service.trigger(data)

    @post(
        "/trigger/bulk",
        status_code=HTTP_200_OK,
        summary="Create up to 1,000 jobs in one transaction",
        raises=[],
    )
    async def trigger_bulk(
        self, request: Request[Any, Any, Any], data: JobBulkTriggerRequest, job_service: JobService
    ) -> JobBulkTriggerResponse:
        """All jobs or none: one invalid item rejects the request with a 400 naming it.

        Each item follows the single trigger's idempotency rules; `created` tells which
        items made a new job.
        """
        require_json(request)
        return JobBulkTriggerResponse(jobs=await job_service.trigger_many(data.jobs))

    @get("/{job_id:str}/status", summary="A job's status, progress and timings")
    async def status(self, job_id: str, job_service: JobService) -> JobStatusResponse:
        """The job as stored now; 404 when unknown, 400 when the id is not a UUID."""
        return await job_service.status(parse_job_id(job_id))

    @post("/{job_id:str}/cancel", status_code=HTTP_200_OK, summary="Cancel a job")
    async def cancel(self, job_id: str, job_service: JobService) -> JobStatusResponse:
        """Queued: canceled at once. Running: flagged, stopped at its next checkpoint.

        Finished: 409 with its status. Unknown: 404.
        """
        return await job_service.cancel(parse_job_id(job_id))


def require_json(request: Request[Any, Any, Any]) -> None:
    """415 unless the body is declared as JSON."""
    media_type = request.content_type[0]
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(
            status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Type must be application/json, not {media_type or 'missing'!r}",
        )


def parse_job_id(raw: str) -> uuid.UUID:
    """A job id from the path; a clear 400 when it is not a UUID."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidJobError(f"job_id {raw[:64]!r} is not a UUID") from None
