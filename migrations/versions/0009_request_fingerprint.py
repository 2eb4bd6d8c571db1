"""dl_jobs.request_fingerprint: what a job was created from, to compare a reused idempotency_key.

A trigger that reuses a key with the same request finds the first job; with a different one
it is a 409. The fingerprint (app/domain/idempotency.py) is what tells them apart. Jobs
written before this revision have none (NULL): it cannot be rebuilt from their columns
(available_at and the lease default were filled in by the server, and retries change
available_at), so a key of such a job keeps the old rule and finds the job whatever the
request. Adding a nullable column without a default rewrites nothing, whatever the table size.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.helpers import queue_schema

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable request_fingerprint column."""
    op.add_column(
        "dl_jobs", sa.Column("request_fingerprint", sa.Text(), nullable=True), schema=queue_schema()
    )


def downgrade() -> None:
    """Drop the column."""
    op.drop_column("dl_jobs", "request_fingerprint", schema=queue_schema())
