"""Batches: jobs created by one bulk trigger with a completion callback (docs/batches.md).

When every job of the batch has reached a final status, the callback job is created once,
with the counts under `batch` in its args:
`{"batch": {"batch_id": ..., "total": 3, "succeeded": 2, "failed": 1, "canceled": 0,
"lost": 0}}`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

# The key of the callback's args the service fills in.
BATCH_ARG = "batch"


class BatchCounts(msgspec.Struct, kw_only=True):
    """The batch's jobs that ended each way."""

    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    lost: int = 0


class BatchView(msgspec.Struct, kw_only=True):
    """GET /api/v1/batches/{batch_id}: the batch as it stands."""

    batch_id: uuid.UUID
    # The jobs of the batch: those the bulk trigger created (an item that found an existing
    # job by its idempotency_key is not part of it).
    total: int
    # Jobs not in a final status yet.
    pending: int
    counts: BatchCounts
    # The callback job, once every job ended; None before.
    callback_job_id: uuid.UUID | None
    # Why the callback could not be created, should that ever happen.
    callback_error: str | None = None
    created_at: datetime
    completed_at: datetime | None
