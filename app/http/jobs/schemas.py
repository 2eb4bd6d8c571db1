"""The bodies of /api/v1/jobs: the domain's job types, and the bulk envelopes HTTP adds."""

from __future__ import annotations

from typing import Annotated

import msgspec

from app.domain.spec import JobCreate
from app.domain.views import Job, JobCreated, JobHistory, JobHistoryEvent, JobPage

__all__ = [
    "BULK_CREATE_LIMIT",
    "Job",
    "JobBulkCreate",
    "JobBulkCreated",
    "JobCreate",
    "JobCreated",
    "JobHistory",
    "JobHistoryEvent",
    "JobPage",
]

BULK_CREATE_LIMIT = 1000


class JobBulkCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Up to BULK_CREATE_LIMIT jobs created in one transaction: all of them, or none."""

    jobs: Annotated[list[JobCreate], msgspec.Meta(min_length=1, max_length=BULK_CREATE_LIMIT)]


class JobBulkCreated(msgspec.Struct, kw_only=True):
    """One answer per requested job, in request order."""

    jobs: list[JobCreated]
    # Said only when there is something to say, e.g. that no live worker serves a queue.
    warnings: list[str] | msgspec.UnsetType = msgspec.UNSET
