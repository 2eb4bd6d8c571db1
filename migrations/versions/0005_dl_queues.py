"""dl_queues: operator state per queue (pause/resume); dl_jobs index for lock_key listings.

ix_dl_jobs_lock_key_created serves a lock_key's history; it replaces ix_dl_jobs_live_lock_key,
which no query used, so a job's status changes still write the same number of index entries.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.helpers import queue_schema

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create dl_queues and ix_dl_jobs_lock_key_created; drop ix_dl_jobs_live_lock_key."""
    op.create_table(
        "dl_queues",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("paused_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("queue", name="pk_dl_queues"),
        schema=queue_schema(),
    )
    # A lock_key's history, newest first (GET /api/v1/jobs?lock_key=).
    op.create_index(
        "ix_dl_jobs_lock_key_created",
        "dl_jobs",
        ["lock_key", sa.text("created_at DESC"), sa.text("job_id DESC")],
        schema=queue_schema(),
    )
    op.drop_index("ix_dl_jobs_live_lock_key", table_name="dl_jobs", schema=queue_schema())


def downgrade() -> None:
    """Drop ix_dl_jobs_lock_key_created and dl_queues; restore ix_dl_jobs_live_lock_key."""
    op.create_index(
        "ix_dl_jobs_live_lock_key",
        "dl_jobs",
        ["lock_key"],
        schema=queue_schema(),
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_index("ix_dl_jobs_lock_key_created", "dl_jobs", schema=queue_schema())
    op.drop_table("dl_queues", schema=queue_schema())
