"""The bodies of /api/v1/jobs: the domain's job types, and the bulk envelopes HTTP adds."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from app.domain.spec import JobCreate
from app.domain.views import (
    Job,
    JobActionResult,
    JobActionResults,
    JobCounts,
    JobCreated,
    JobHistory,
    JobHistoryEvent,
    JobPage,
)

__all__ = [
    "BULK_ACTION_LIMIT",
    "BULK_CREATE_LIMIT",
    "Job",
    "JobActionResult",
    "JobActionResults",
    "JobBulkCreate",
    "JobBulkCreated",
    "JobCounts",
    "JobCreate",
    "JobCreated",
    "JobHistory",
    "JobHistoryEvent",
    "JobIdList",
    "JobPage",
]

BULK_CREATE_LIMIT = 1000
# Jobs one bulk cancel or retry acts on: each is its own transaction, so the request's time
# grows with the count (about 2 ms per job); a client with more sends several requests.
BULK_ACTION_LIMIT = 500


class JobBulkCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Up to BULK_CREATE_LIMIT jobs created in one transaction: all of them, or none."""

    jobs: Annotated[list[JobCreate], msgspec.Meta(min_length=1, max_length=BULK_CREATE_LIMIT)]
    # A job created once, when every job this call created has reached a final status, with
    # the counts under `batch` in its args (docs/batches.md).
    on_complete: JobCreate | None = None


class JobBulkCreated(msgspec.Struct, kw_only=True):
    """One answer per requested job, in request order."""

    jobs: list[JobCreated]
    # Only with `on_complete`: the batch the jobs make (GET /api/v1/batches/{batch_id}).
    batch_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    # Said only when there is something to say, e.g. that no live worker serves a queue.
    warnings: list[str] | msgspec.UnsetType = msgspec.UNSET


class JobIdList(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The jobs a bulk cancel or retry acts on: 1 to BULK_ACTION_LIMIT distinct ids."""

    job_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=BULK_ACTION_LIMIT)]
