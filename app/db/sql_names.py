"""Quoted, schema-qualified table names for SQL written as text (the rest uses Core tables)."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """`name` as a PostgreSQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """`schema`.`table`, both quoted."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"
