"""dl_jobs.result: what a job's pipeline returned, stored as JSON with `succeeded`.

Written by the finish statement (app.db.job_batches) under the same fence as the status, so
only the running attempt writes it; cleared when a job is retried. Results go with their
job when retention deletes it. A nullable column without a default rewrites nothing:
instant on a large table. Large values are TOASTed out of line, so the listing, which
leaves the column out unless asked, does not read them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.helpers import queue_schema

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the column."""
    op.add_column("dl_jobs", sa.Column("result", JSONB(), nullable=True), schema=queue_schema())


def downgrade() -> None:
    """Drop the column (and every stored result)."""
    op.drop_column("dl_jobs", "result", schema=queue_schema())
