"""Workflows take an idempotency_key (dl_workflows.idempotency_key, request_fingerprint),
and the listing by name gets its index.

A client that sends a workflow again (its answer was lost) with the same key gets the
workflow it created, not a second DAG; a different request under the key is a 409. The
unique index is partial, so workflows without a key add no entry; new nullable columns
rewrite nothing.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.helpers import queue_schema

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The two columns and the key's unique index."""
    schema = queue_schema()
    op.add_column("dl_workflows", sa.Column("idempotency_key", sa.Text()), schema=schema)
    op.add_column("dl_workflows", sa.Column("request_fingerprint", sa.Text()), schema=schema)
    op.create_index(
        "uq_dl_workflows_idempotency_key",
        "dl_workflows",
        ["idempotency_key"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(
        "ix_dl_workflows_name_created_at",
        "dl_workflows",
        ["name", sa.text("created_at DESC")],
        schema=schema,
    )


def downgrade() -> None:
    """Drop the indexes and the columns."""
    schema = queue_schema()
    op.drop_index("ix_dl_workflows_name_created_at", "dl_workflows", schema=schema)
    op.drop_index("uq_dl_workflows_idempotency_key", "dl_workflows", schema=schema)
    op.drop_column("dl_workflows", "request_fingerprint", schema=schema)
    op.drop_column("dl_workflows", "idempotency_key", schema=schema)
