"""pgqueuer's own schema (tables, enum, indexes, NOTIFY trigger) for the pinned version.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from app.db.pgqueuer_schema import install_statements, pgqueuer_settings, uninstall_statements
from migrations.helpers import queue_schema

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the queue schema if needed, then every pgqueuer object in it."""
    schema = queue_schema()
    op.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    # One statement per call: asyncpg prepares statements one at a time.
    for statement in install_statements(pgqueuer_settings(schema)):
        op.get_bind().exec_driver_sql(statement)


def downgrade() -> None:
    """Drop every pgqueuer object, and the queue schema when it is not public and empty."""
    schema = queue_schema()
    for statement in uninstall_statements(pgqueuer_settings(schema)):
        op.get_bind().exec_driver_sql(statement)
    if schema != "public":
        op.execute(f'DROP SCHEMA IF EXISTS "{schema}" RESTRICT')
