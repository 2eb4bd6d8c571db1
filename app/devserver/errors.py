"""The development server's one error."""

from __future__ import annotations


class EmbeddedPostgresError(Exception):
    """The embedded PostgreSQL server could not be set up or started."""
