"""An index on pgqueuer_statistics.created, so retention deletes old buckets in small batches.

pgqueuer indexes pgqueuer_log.created itself, but not its statistics table. Without the
index each retention batch sorts the whole table (about 0.5 s for 1M buckets) and a pass
with nothing to delete still reads all of it; with it a batch of 1,000 takes about 2 ms.
The name is ours (dl_), so it never collides with an index a later pgqueuer adds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations.helpers import queue_schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "dl_pgqueuer_statistics_created"


def upgrade() -> None:
    """Index pgqueuer_statistics by its bucket time."""
    op.create_index(INDEX, "pgqueuer_statistics", ["created"], schema=queue_schema())


def downgrade() -> None:
    """Drop the index."""
    op.drop_index(INDEX, table_name="pgqueuer_statistics", schema=queue_schema())
