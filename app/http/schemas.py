"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated

import msgspec

from app.domain.spec import JobCreate
from app.domain.views import Job, JobCreated, JobHistory, JobPage

# The trigger body is the domain's JobCreate, so HTTP and in-app callers share one validation.
JobTriggerRequest = JobCreate
JobStatusResponse = Job
JobTriggerResponse = JobCreated
JobListResponse = JobPage
JobEventsResponse = JobHistory

BULK_TRIGGER_LIMIT = 1000


class JobBulkTriggerRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Up to BULK_TRIGGER_LIMIT jobs created in one transaction: all of them, or none."""

    jobs: Annotated[list[JobCreate], msgspec.Meta(min_length=1, max_length=BULK_TRIGGER_LIMIT)]


class JobBulkTriggerResponse(msgspec.Struct, kw_only=True):
    """One answer per requested job, in request order."""

    jobs: list[JobCreated]


class ErrorResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every 4xx and 5xx: `detail` says what is wrong, naming the field when there is one."""

    status_code: int
    detail: str
    # A 409 about a job's status carries that status.
    job_status: str | None = None


class HealthResponse(msgspec.Struct):
    """Liveness: the process answers."""

    status: str = "healthy"


class ReadyResponse(msgspec.Struct):
    """Readiness: the database answers."""

    status: str
    database: str


class InfoResponse(msgspec.Struct, kw_only=True):
    """What is running, and since when."""

    service: str
    version: str
    environment: str
    uptime_sec: float
