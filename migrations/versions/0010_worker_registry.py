"""dl_workers gains what a worker registers at start: its version and its tasks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.helpers import queue_schema

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add version and tasks ({task: JSON schema of its args, or null}) to dl_workers."""
    schema = queue_schema()
    op.add_column(
        "dl_workers",
        sa.Column("version", sa.Text(), server_default="", nullable=False),
        schema=schema,
    )
    op.add_column(
        "dl_workers",
        sa.Column("tasks", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        schema=schema,
    )


def downgrade() -> None:
    """Drop the columns again."""
    op.drop_column("dl_workers", "tasks", schema=queue_schema())
    op.drop_column("dl_workers", "version", schema=queue_schema())
