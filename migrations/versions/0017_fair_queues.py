"""Fair queues: dl_queues.fair_by_partition and fair_base, dl_jobs.fair_round.

A job triggered into a fair queue gets a round (app.db.fairness): one more than the last
queued job of its partition_key, and never below the round the queue's due jobs have
reached, so every tenant's next job waits behind at most one job of each other tenant. Its
pgqueuer dispatch runs by (priority, round - fair_base). The two partial indexes hold only
queued jobs of fair queues: they find a tenant's last round and the queue's front. New
nullable columns rewrite nothing, and the indexes start empty of entries for existing
jobs, but building them reads the table under a lock that blocks job writes; on a large
live table create them beforehand with `CREATE INDEX CONCURRENTLY` under the same names and
definitions, and this revision finds them in place. dl_enqueue() is installed again to give
its jobs their rounds.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.helpers import queue_schema, reinstall_dl_enqueue

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED_FAIR = "status = 'queued' AND fair_round IS NOT NULL"


def upgrade() -> None:
    """Add the columns and indexes; dl_enqueue that gives fair jobs their round."""
    schema = queue_schema()
    op.add_column(
        "dl_queues",
        sa.Column(
            "fair_by_partition", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        schema=schema,
    )
    op.add_column(
        "dl_queues",
        sa.Column("fair_base", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        schema=schema,
    )
    op.add_column("dl_jobs", sa.Column("fair_round", sa.BigInteger()), schema=schema)
    # IF NOT EXISTS: an operator may have built them CONCURRENTLY ahead of the upgrade.
    op.create_index(
        "ix_dl_jobs_fair_tenant",
        "dl_jobs",
        ["queue", sa.text("coalesce(partition_key, '')"), "fair_round"],
        schema=schema,
        postgresql_where=sa.text(QUEUED_FAIR),
        if_not_exists=True,
    )
    op.create_index(
        "ix_dl_jobs_fair_front",
        "dl_jobs",
        ["queue", "fair_round"],
        schema=schema,
        postgresql_where=sa.text(QUEUED_FAIR),
        if_not_exists=True,
    )
    reinstall_dl_enqueue(release=17, previous=16)


def downgrade() -> None:
    """dl_enqueue as 0016 installed it; drop the indexes and columns."""
    schema = queue_schema()
    reinstall_dl_enqueue(release=16, previous=17)
    op.drop_index("ix_dl_jobs_fair_front", "dl_jobs", schema=schema)
    op.drop_index("ix_dl_jobs_fair_tenant", "dl_jobs", schema=schema)
    op.drop_column("dl_jobs", "fair_round", schema=schema)
    op.drop_column("dl_queues", "fair_base", schema=schema)
    op.drop_column("dl_queues", "fair_by_partition", schema=schema)
