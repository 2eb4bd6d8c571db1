"""Traces: dl_jobs.traceparent and tracestate, the W3C trace context of a job's trigger.

Written only when the trigger ran inside a trace (docs/tracing.md); NULL otherwise, and for
every job written before. The worker runs each attempt in a span whose parent is this
context. New nullable columns without defaults rewrite nothing and take only a brief lock.
dl_enqueue() is unchanged: jobs created from SQL carry no trace context.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.helpers import queue_schema

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two columns."""
    schema = queue_schema()
    op.add_column("dl_jobs", sa.Column("traceparent", sa.Text()), schema=schema)
    op.add_column("dl_jobs", sa.Column("tracestate", sa.Text()), schema=schema)


def downgrade() -> None:
    """Drop the two columns."""
    schema = queue_schema()
    op.drop_column("dl_jobs", "tracestate", schema=schema)
    op.drop_column("dl_jobs", "traceparent", schema=schema)
