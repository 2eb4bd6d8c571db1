"""Helpers the migration scripts share."""

from __future__ import annotations

from alembic import context


def queue_schema() -> str:
    """The schema env.py chose for the queue's tables (PG_SCHEMA_QUEUE)."""
    return str(context.config.attributes["queue_schema"])
