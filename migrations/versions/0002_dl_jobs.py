"""dl_jobs (the lifecycle record of each job) and dl_job_events (its history).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.helpers import queue_schema

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'queued', 'running', 'succeeded', 'failed', 'canceled', 'lost'"
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create both tables with their constraints and indexes."""
    schema = queue_schema()
    op.create_table(
        "dl_jobs",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column(
            "args", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("lock_key", sa.Text(), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), server_default=sa.text("100"), nullable=False),
        sa.Column("available_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("5"), nullable=False),
        sa.Column("lease_ttl_sec", sa.Integer(), server_default=sa.text("60"), nullable=False),
        sa.Column("lease_expires_at", TZ, nullable=True),
        sa.Column("heartbeat_at", TZ, nullable=True),
        sa.Column(
            "cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("progress", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("producer", sa.Text(), nullable=True),
        sa.Column("consumer_group", sa.Text(), nullable=True),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column("pgq_job_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_dl_jobs"),
        sa.UniqueConstraint("idempotency_key", name="uq_dl_jobs_idempotency_key"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_dl_jobs_status_valid"),
        sa.CheckConstraint("attempt >= 0", name="ck_dl_jobs_attempt_non_negative"),
        sa.CheckConstraint("max_attempts >= 1", name="ck_dl_jobs_max_attempts_positive"),
        sa.CheckConstraint("lease_ttl_sec >= 1", name="ck_dl_jobs_lease_ttl_positive"),
        sa.CheckConstraint(
            "length(queue) > 0 AND length(task) > 0", name="ck_dl_jobs_names_present"
        ),
        sa.CheckConstraint("length(lock_key) > 0", name="ck_dl_jobs_lock_key_present"),
        schema=schema,
    )
    live = sa.text("status IN ('queued', 'running')")
    op.create_index(
        "ix_dl_jobs_live_status",
        "dl_jobs",
        ["queue", "status", "priority", "available_at"],
        postgresql_where=live,
        schema=schema,
    )
    op.create_index(
        "ix_dl_jobs_lease_expiry",
        "dl_jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'running'"),
        schema=schema,
    )
    op.create_index(
        "ix_dl_jobs_created",
        "dl_jobs",
        [sa.text("created_at DESC"), sa.text("job_id DESC")],
        schema=schema,
    )
    op.create_index(
        "ix_dl_jobs_status_finished", "dl_jobs", ["status", "finished_at"], schema=schema
    )
    op.create_index(
        "ix_dl_jobs_live_lock_key", "dl_jobs", ["lock_key"], postgresql_where=live, schema=schema
    )
    op.create_index("ix_dl_jobs_pgq_job_id", "dl_jobs", ["pgq_job_id"], schema=schema)

    op.create_table(
        "dl_job_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dl_job_events"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            [f"{schema}.dl_jobs.job_id"],
            name="fk_dl_job_events_job_id_dl_jobs",
            ondelete="CASCADE",
        ),
        schema=schema,
    )
    op.create_index("ix_dl_job_events_job_id_id", "dl_job_events", ["job_id", "id"], schema=schema)


def downgrade() -> None:
    """Drop both tables (indexes and constraints go with them)."""
    schema = queue_schema()
    op.drop_table("dl_job_events", schema=schema)
    op.drop_table("dl_jobs", schema=schema)
