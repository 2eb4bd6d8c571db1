"""dl_schedules: cron schedules the maintenance leader fires through the enqueue path.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.helpers import queue_schema

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create dl_schedules with its due-time index."""
    schema = queue_schema()
    op.create_table(
        "dl_schedules",
        sa.Column("schedule_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column(
            "args", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("lock_key", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("100"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("5"), nullable=False),
        sa.Column("lease_ttl_sec", sa.Integer(), nullable=True),
        sa.Column("source", sa.Text(), server_default=sa.text("'api'"), nullable=False),
        sa.Column("next_run_at", TZ, nullable=True),
        sa.Column("last_run_at", TZ, nullable=True),
        sa.Column("last_job_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "length(name) > 0 AND length(cron) > 0", name="ck_dl_schedules_names_present"
        ),
        sa.CheckConstraint("source IN ('api', 'code')", name="ck_dl_schedules_source_valid"),
        sa.CheckConstraint("max_attempts >= 1", name="ck_dl_schedules_max_attempts_positive"),
        sa.PrimaryKeyConstraint("schedule_id", name="pk_dl_schedules"),
        sa.UniqueConstraint("name", name="uq_dl_schedules_name"),
        schema=schema,
    )
    op.create_index(
        "ix_dl_schedules_due",
        "dl_schedules",
        ["next_run_at"],
        schema=schema,
        postgresql_where=sa.text("enabled"),
    )


def downgrade() -> None:
    """Drop dl_schedules."""
    schema = queue_schema()
    op.drop_index("ix_dl_schedules_due", table_name="dl_schedules", schema=schema)
    op.drop_table("dl_schedules", schema=schema)
