"""pgqueuer's schema and query objects bound to PG_SCHEMA_QUEUE.

The Alembic migration and `pgq install` must agree, so the migration renders the pinned
pgqueuer version's own declaration statement by statement (asyncpg prepares one at a time).
"""

from __future__ import annotations

import asyncpg
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.adapters.persistence import schema_ddl
from pgqueuer.adapters.persistence.qb import (
    DBSettings,
    QueryBuilderEnvironment,
    QueryQueueBuilder,
    QuerySchedulerBuilder,
)
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.domain.schema.declaration import target


def pgqueuer_settings(schema: str) -> DBSettings:
    """pgqueuer's object names, placed in the queue schema."""
    return DBSettings(db_schema=schema)


def install_statements(settings: DBSettings) -> list[str]:
    """pgqueuer's install script as separate statements, in dependency order."""
    declared = target(settings)
    return [
        *(schema_ddl.render_enum(entry, settings) for entry in declared.enums),
        *(schema_ddl.render_table(entry, settings) for entry in declared.tables),
        *(schema_ddl.render_index(entry, settings) for entry in declared.indexes),
        *(schema_ddl.render_function(entry, settings) for entry in declared.functions),
        *(schema_ddl.render_trigger(entry, settings) for entry in declared.triggers),
    ]


def uninstall_statements(settings: DBSettings) -> list[str]:
    """pgqueuer's uninstall script as separate statements."""
    return [line for line in schema_ddl.render_uninstall(settings).splitlines() if line.strip()]


def queries_for(connection: asyncpg.Connection, settings: DBSettings) -> Queries:
    """pgqueuer Queries on one asyncpg connection, bound to these settings."""
    return Queries(
        AsyncpgDriver(connection),
        qbe=QueryBuilderEnvironment(settings),
        qbq=QueryQueueBuilder(settings),
        qbs=QuerySchedulerBuilder(settings),
    )
