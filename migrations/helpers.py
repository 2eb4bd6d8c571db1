"""Helpers the migration scripts share."""

from __future__ import annotations

from alembic import context, op

from app.db.enqueue_function import install_statements, signature
from app.db.sql_common import quote_ident


def queue_schema() -> str:
    """The schema env.py chose for the queue's tables (PG_SCHEMA_QUEUE)."""
    return str(context.config.attributes["queue_schema"])


def reinstall_dl_enqueue(*, release: int, previous: int) -> None:
    """dl_enqueue as `release` renders it (app.db.enqueue_function); `previous` dropped first.

    Another argument list makes another function (an overload), not a replacement: left in
    place, a call naming only the common arguments would be ambiguous.
    """
    schema = queue_schema()
    op.get_bind().exec_driver_sql(
        f"DROP FUNCTION IF EXISTS {quote_ident(schema)}.dl_enqueue({signature(previous)})"
    )
    for statement in install_statements(schema, release):
        op.get_bind().exec_driver_sql(statement)
