"""dl_jobs.concurrency_key and concurrency_limit: at most N jobs of a key run at once.

Both NULL (no group) or both set, the limit between 1 and MAX_CONCURRENCY_LIMIT
(app.domain.spec). The worker enforces the limit with N advisory-lock slots per key on its
lock session (app.db.job_batches); the columns only say which group a job belongs to.
Adding nullable columns without a default rewrites nothing: instant on a large table.
dl_enqueue() is installed again with `concurrency_key` and `concurrency_limit` parameters
(app.db.enqueue_function).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.helpers import queue_schema, reinstall_dl_enqueue

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "ck_dl_jobs_concurrency_group_valid"
# Kept literal: a migration must not change when the application's limit does.
CHECK = (
    "(concurrency_key IS NULL AND concurrency_limit IS NULL) OR "
    "(length(concurrency_key) > 0 AND concurrency_limit BETWEEN 1 AND 1000)"
)


def upgrade() -> None:
    """Add the two columns and their pairing rule."""
    schema = queue_schema()
    op.add_column("dl_jobs", sa.Column("concurrency_key", sa.Text(), nullable=True), schema=schema)
    op.add_column(
        "dl_jobs", sa.Column("concurrency_limit", sa.Integer(), nullable=True), schema=schema
    )
    op.create_check_constraint(CONSTRAINT, "dl_jobs", CHECK, schema=schema)
    reinstall_dl_enqueue(release=13, previous=11)


def downgrade() -> None:
    """Drop them, with dl_enqueue's group parameters."""
    schema = queue_schema()
    reinstall_dl_enqueue(release=11, previous=13)
    op.drop_constraint(CONSTRAINT, "dl_jobs", type_="check", schema=schema)
    op.drop_column("dl_jobs", "concurrency_limit", schema=schema)
    op.drop_column("dl_jobs", "concurrency_key", schema=schema)
