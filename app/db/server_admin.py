"""SQL that administers the PostgreSQL server itself: the embedded server's bootstrap."""

from __future__ import annotations

from app.db.sql_common import quote_ident


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def database_exists_query(database: str) -> str:
    """A query that prints 1 when `database` exists (psql -tAc)."""
    return f"SELECT 1 FROM pg_database WHERE datname = {_literal(database)}"


def create_database_statement(database: str) -> str:
    """CREATE DATABASE for `database`, quoted."""
    return f"CREATE DATABASE {quote_ident(database)}"


def set_password_statement(role: str, password: str) -> str:
    """ALTER ROLE giving `role` the password `password` (stored as the server's
    password_encryption says: SCRAM on PostgreSQL 14 and later)."""
    return f"ALTER ROLE {quote_ident(role)} PASSWORD {_literal(password)}"
