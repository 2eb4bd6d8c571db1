"""dl_enqueue() and dl_request_fingerprint(): create a job from SQL, in the caller's transaction.

Installs what app.db.enqueue_function renders (see there). The Python insert computes its
request fingerprints through dl_request_fingerprint() from now on, which digests the request
as PostgreSQL sees it (jsonb), not as Python encoded it: the fingerprints of keyed jobs
written since 0009 could never match again, so they are cleared and those keys keep the rule
of jobs from before 0009 (a reused key finds its job whatever the request).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from app.db.enqueue_function import install_statements, uninstall_statements
from migrations.helpers import queue_schema

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the functions; forget the Python-made fingerprints of keyed jobs."""
    schema = queue_schema()
    # As it was then: the concurrency-group parameters came with 0013.
    for statement in install_statements(schema, 11):
        op.get_bind().exec_driver_sql(statement)
    _forget_fingerprints(schema)


def downgrade() -> None:
    """Drop the functions; forget their fingerprints, which 0009's Python digest never matches."""
    schema = queue_schema()
    for statement in uninstall_statements(schema):
        op.get_bind().exec_driver_sql(statement)
    _forget_fingerprints(schema)


def _forget_fingerprints(schema: str) -> None:
    """Keyed jobs keep the rule of jobs without a fingerprint: the key finds them."""
    op.get_bind().exec_driver_sql(
        f'UPDATE "{schema}".dl_jobs SET request_fingerprint = NULL'
        " WHERE idempotency_key IS NOT NULL AND request_fingerprint IS NOT NULL"
    )
