"""Fewer index writes per job: each status change of a dl_jobs row rewrites every index entry.

- ix_dl_jobs_pgq_job_id: no query looks jobs up by dispatch id; dropped.
- uq_dl_jobs_idempotency_key: a partial unique index over keys that are set, so jobs without
  a key (most of them) add no entry on each of their updates.
- ix_dl_jobs_status_finished: only finished jobs, so starting a job adds no entry.
- fk_dl_job_events_job_id_dl_jobs: dropped. Every event is written by the same statement
  that writes its job's row, so the check (a trigger call and a row lock per event, about a
  fifth of a start statement's time) guards nothing; retention deletes events with their job.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.helpers import queue_schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Swap the three indexes for their leaner forms; drop the events' foreign key."""
    schema = queue_schema()
    op.drop_index("ix_dl_jobs_pgq_job_id", table_name="dl_jobs", schema=schema)
    op.drop_constraint("uq_dl_jobs_idempotency_key", "dl_jobs", type_="unique", schema=schema)
    op.create_index(
        "uq_dl_jobs_idempotency_key",
        "dl_jobs",
        ["idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        schema=schema,
    )
    op.drop_index("ix_dl_jobs_status_finished", table_name="dl_jobs", schema=schema)
    op.create_index(
        "ix_dl_jobs_status_finished",
        "dl_jobs",
        ["status", "finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        schema=schema,
    )
    op.drop_constraint(
        "fk_dl_job_events_job_id_dl_jobs", "dl_job_events", type_="foreignkey", schema=schema
    )


def downgrade() -> None:
    """Restore the indexes and the foreign key of revision 0002."""
    schema = queue_schema()
    op.create_foreign_key(
        "fk_dl_job_events_job_id_dl_jobs",
        "dl_job_events",
        "dl_jobs",
        ["job_id"],
        ["job_id"],
        source_schema=schema,
        referent_schema=schema,
        ondelete="CASCADE",
    )
    op.drop_index("ix_dl_jobs_status_finished", table_name="dl_jobs", schema=schema)
    op.create_index(
        "ix_dl_jobs_status_finished", "dl_jobs", ["status", "finished_at"], schema=schema
    )
    op.drop_index("uq_dl_jobs_idempotency_key", table_name="dl_jobs", schema=schema)
    op.create_unique_constraint(
        "uq_dl_jobs_idempotency_key", "dl_jobs", ["idempotency_key"], schema=schema
    )
    op.create_index("ix_dl_jobs_pgq_job_id", "dl_jobs", ["pgq_job_id"], schema=schema)
