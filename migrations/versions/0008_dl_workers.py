"""dl_workers: which live workers serve which queues (membership for targeted wake-ups).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.helpers import queue_schema

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create dl_workers: one row per running worker process, refreshed while it lives."""
    op.create_table(
        "dl_workers",
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        # {"queue": concurrency, ...}: jsonb so that later fields need no migration of their own.
        sa.Column("queues", JSONB(), nullable=False),
        sa.Column("started_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("last_seen_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name="pk_dl_workers"),
        schema=queue_schema(),
    )


def downgrade() -> None:
    """Drop dl_workers."""
    op.drop_table("dl_workers", schema=queue_schema())
