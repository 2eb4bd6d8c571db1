"""dl_jobs.coalescing and uq_dl_jobs_coalescing_queued: coalescing triggers join a queued job.

A job made by a coalescing trigger has `coalescing` true. While it is queued, the partial
unique index on (queue, task, lock_key) keeps it the only such job: a later coalescing
trigger's insert is skipped by it and joins that job instead (app.db.coalescing). A new
NOT NULL column with a constant default rewrites nothing (instant on a large table). The
index holds only queued coalescing jobs, so it stays tiny, but building it reads the whole
table under a lock that blocks job writes (a few seconds at a million jobs); on a large live
table create it beforehand with `CREATE UNIQUE INDEX CONCURRENTLY` under the same name and
definition, and this revision finds it in place. dl_enqueue() is installed again with a
`coalescing` parameter and the OUT columns `coalesced` and `differs`.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.helpers import queue_schema, reinstall_dl_enqueue

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_dl_jobs_coalescing_queued"


def upgrade() -> None:
    """Add the column and its index; dl_enqueue with `coalescing`."""
    schema = queue_schema()
    op.add_column(
        "dl_jobs",
        sa.Column("coalescing", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema=schema,
    )
    # IF NOT EXISTS: an operator may have built it CONCURRENTLY ahead of the upgrade.
    op.create_index(
        INDEX,
        "dl_jobs",
        ["queue", "task", "lock_key"],
        unique=True,
        schema=schema,
        postgresql_where=sa.text("status = 'queued' AND coalescing"),
        if_not_exists=True,
    )
    reinstall_dl_enqueue(release=16, previous=14)


def downgrade() -> None:
    """dl_enqueue as 0014 installed it; drop the index and the column."""
    schema = queue_schema()
    reinstall_dl_enqueue(release=14, previous=16)
    op.drop_index(INDEX, "dl_jobs", schema=schema)
    op.drop_column("dl_jobs", "coalescing", schema=schema)
