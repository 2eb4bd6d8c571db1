"""dl_rate_admit() installed again: the same decisions in a constant number of statements.

The function used to lock, read and write each bucket with statements of its own (three
per bucket: a call over the queue's bucket and 16 rate keys ran 51), while the start
statement that calls it holds the queue's bucket until it commits. It now lists, locks,
reads and writes all of a call's buckets in one statement each (app.db.rate_limit_function).
Its arguments, results and locks are unchanged, so the downgrade keeps it: the body 0014
installed decides the same.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from app.db.rate_limit_function import install_statements
from migrations.helpers import queue_schema

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """CREATE OR REPLACE the function with its new body."""
    for statement in install_statements(queue_schema()):
        op.get_bind().exec_driver_sql(statement)


def downgrade() -> None:
    """Nothing to undo: the function's contract is 0014's."""
