"""SQL that administers the PostgreSQL server itself (the dev server's bootstrap), for psql."""

from __future__ import annotations

from app.db.sql_common import quote_ident


def database_exists_query(database: str) -> str:
    """A query that prints 1 when `database` exists (psql -tAc)."""
    literal = "'" + database.replace("'", "''") + "'"
    return f"SELECT 1 FROM pg_database WHERE datname = {literal}"


def create_database_statement(database: str) -> str:
    """CREATE DATABASE for `database`, quoted."""
    return f"CREATE DATABASE {quote_ident(database)}"
