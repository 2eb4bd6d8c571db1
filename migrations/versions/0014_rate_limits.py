"""Fleet-wide rate limits: queue limits on dl_queues, dl_jobs.rate_key and waiting_for,
dl_rate_buckets and dl_rate_admit().

A queue's limits are two optional pairs on its dl_queues row (a count per period for the
queue, and for each rate_key); their buckets are dl_rate_buckets rows, one per (queue,
rate_key), '' for the queue's own (app.db.rate_limit_function). dl_jobs.waiting_for says
why a picked job did not start yet (app.domain.rate_limits.WaitReason). Nullable columns
without a default rewrite nothing: instant on a large table. dl_enqueue() is installed again
with a `rate_key` parameter.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.rate_limit_function import install_statements, uninstall_statements
from migrations.helpers import queue_schema, reinstall_dl_enqueue

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
# Kept literal: a migration must not change when the application's bounds do.
LIMIT_CHECKS = {
    "ck_dl_queues_start_limit_valid": (
        "(start_limit IS NULL AND start_period_sec IS NULL) OR "
        "(start_limit BETWEEN 1 AND 10000 AND start_period_sec BETWEEN 0.01 AND 86400)"
    ),
    "ck_dl_queues_rate_key_limit_valid": (
        "(rate_key_limit IS NULL AND rate_key_period_sec IS NULL) OR "
        "(rate_key_limit BETWEEN 1 AND 10000 AND rate_key_period_sec BETWEEN 0.01 AND 86400)"
    ),
}


def upgrade() -> None:
    """Add the columns, the bucket table and the function."""
    schema = queue_schema()
    for name in ("start", "rate_key"):
        op.add_column("dl_queues", sa.Column(f"{name}_limit", sa.Integer()), schema=schema)
        op.add_column("dl_queues", sa.Column(f"{name}_period_sec", sa.Float()), schema=schema)
    for constraint, check in LIMIT_CHECKS.items():
        op.create_check_constraint(constraint, "dl_queues", check, schema=schema)
    op.add_column("dl_jobs", sa.Column("rate_key", sa.Text()), schema=schema)
    op.add_column("dl_jobs", sa.Column("waiting_for", sa.Text()), schema=schema)
    op.create_check_constraint(
        "ck_dl_jobs_rate_key_present", "dl_jobs", "length(rate_key) > 0", schema=schema
    )
    op.create_table(
        "dl_rate_buckets",
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("rate_key", sa.Text(), nullable=False),
        sa.Column(
            "started_at",
            sa.ARRAY(TZ),
            server_default=sa.text("'{}'::timestamptz[]"),
            nullable=False,
        ),
        sa.Column(
            "started_n",
            sa.ARRAY(sa.Integer()),
            server_default=sa.text("'{}'::int[]"),
            nullable=False,
        ),
        sa.Column("promise_at", TZ, nullable=True),
        sa.Column("promise_n", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("queue", "rate_key", name="pk_dl_rate_buckets"),
        schema=schema,
    )
    for statement in install_statements(schema):
        op.get_bind().exec_driver_sql(statement)
    reinstall_dl_enqueue(release=14, previous=13)


def downgrade() -> None:
    """Drop them, with dl_enqueue's rate_key parameter."""
    schema = queue_schema()
    reinstall_dl_enqueue(release=13, previous=14)
    for statement in uninstall_statements(schema):
        op.get_bind().exec_driver_sql(statement)
    op.drop_table("dl_rate_buckets", schema=schema)
    op.drop_constraint("ck_dl_jobs_rate_key_present", "dl_jobs", type_="check", schema=schema)
    op.drop_column("dl_jobs", "waiting_for", schema=schema)
    op.drop_column("dl_jobs", "rate_key", schema=schema)
    for constraint in LIMIT_CHECKS:
        op.drop_constraint(constraint, "dl_queues", type_="check", schema=schema)
    for name in ("start", "rate_key"):
        op.drop_column("dl_queues", f"{name}_period_sec", schema=schema)
        op.drop_column("dl_queues", f"{name}_limit", schema=schema)
