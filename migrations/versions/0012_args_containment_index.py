"""ix_dl_jobs_args: a GIN index (jsonb_path_ops) for the listing's `args` containment filter.

`GET /api/v1/jobs?args={"account": 7}` filters by `args @> '{"account": 7}'`. Without an
index a selective match reads every row (about 0.5 s at a million jobs, docs/performance.md);
with it the few matching rows are found directly. jsonb_path_ops serves `@>` only and is
smaller and faster than the default jsonb_ops, which the listing has no use for. The build
holds a lock that blocks job writes for its duration (a few seconds at a million jobs); on a
large live table create it beforehand with `CREATE INDEX CONCURRENTLY` under the same name
and this revision finds it in place.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations.helpers import queue_schema

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_dl_jobs_args"


def upgrade() -> None:
    """Index dl_jobs.args for containment."""
    # IF NOT EXISTS: an operator may have built it CONCURRENTLY ahead of the upgrade.
    op.create_index(
        INDEX,
        "dl_jobs",
        ["args"],
        schema=queue_schema(),
        postgresql_using="gin",
        postgresql_ops={"args": "jsonb_path_ops"},
        if_not_exists=True,
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index(INDEX, "dl_jobs", schema=queue_schema())
