"""Batches: dl_batches, dl_jobs.batch_id, and the trigger that completes a batch.

A bulk trigger with an `on_complete` callback makes a batch of the jobs it created; when
every one of them has reached a final status, the callback job is created exactly once, in
the transaction of the last change (app.db.batch_functions). The trigger is defined only for
status changes of jobs with a batch_id, so other jobs pay nothing. A new nullable column
rewrites nothing; the partial index starts empty.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.batch_functions import install_statements, uninstall_statements
from migrations.helpers import queue_schema

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The table, the column and its index, the functions and the trigger."""
    schema = queue_schema()
    op.create_table(
        "dl_batches",
        sa.Column("batch_id", sa.Uuid(), primary_key=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("canceled", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lost", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("callback", postgresql.JSONB(), nullable=False),
        sa.Column("callback_job_id", sa.Uuid()),
        sa.Column("callback_error", sa.Text()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("pending >= 0 AND pending <= total", name="pending_valid"),
        schema=schema,
    )
    op.create_index(
        "ix_dl_batches_completed",
        "dl_batches",
        ["completed_at"],
        schema=schema,
        postgresql_where=sa.text("completed_at IS NOT NULL"),
    )
    op.add_column("dl_jobs", sa.Column("batch_id", sa.Uuid()), schema=schema)
    op.create_index(
        "ix_dl_jobs_batch",
        "dl_jobs",
        ["batch_id"],
        schema=schema,
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    for statement in install_statements(schema):
        op.get_bind().exec_driver_sql(statement)


def downgrade() -> None:
    """Everything upgrade added, in reverse."""
    schema = queue_schema()
    for statement in uninstall_statements(schema):
        op.get_bind().exec_driver_sql(statement)
    op.drop_index("ix_dl_jobs_batch", "dl_jobs", schema=schema)
    op.drop_column("dl_jobs", "batch_id", schema=schema)
    op.drop_index("ix_dl_batches_completed", "dl_batches", schema=schema)
    op.drop_table("dl_batches", schema=schema)
