"""SQL building blocks the table modules share: quoted names for SQL text, the retention cutoff."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Interval, bindparam, func, literal, literal_column, tuple_

from app.domain.filters import PageCursor


def quote_ident(name: str) -> str:
    """`name` as a PostgreSQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """`schema`.`table`, both quoted."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def cutoff(retention: timedelta) -> ColumnElement[Any]:
    """`now() - retention` by the database clock (the transaction's start)."""
    return func.now() - bindparam("retention", retention, type_=Interval)


def inline_constant(value: str) -> ColumnElement[Any]:
    """A text constant spelled into the SQL: partial indexes are only matched against
    constants, never against the bound parameters of a prepared statement's generic plan."""
    return literal_column("'" + value.replace("'", "''") + "'")


def after_cursor(
    created_at: ColumnElement[Any], row_id: ColumnElement[Any], cursor: PageCursor
) -> ColumnElement[bool]:
    """Rows listed after `cursor` in a newest-first listing ordered by (created_at, row_id)
    descending: one row comparison, which an index on created_at can start from."""
    return tuple_(created_at, row_id) < tuple_(
        literal(cursor.created_at, created_at.type), literal(cursor.row_id, row_id.type)
    )
