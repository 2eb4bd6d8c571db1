"""Alembic environment: async engine from the service settings, tables in PG_SCHEMA_QUEUE."""

from __future__ import annotations

import asyncio
import logging.config

from alembic import context
from sqlalchemy.engine import Connection

from app.db.connections import migrations_engine
from app.db.models import Base
from app.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

settings = get_settings()
url = config.attributes.get("sqlalchemy_url") or settings.session_sqlalchemy_url
queue_schema = config.attributes.get("queue_schema") or settings.pg_schema_queue
# Migrations read the schema from here, so a caller can migrate a database other than
# the configured one (tests do).
config.attributes["queue_schema"] = queue_schema


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on one connection, in one transaction."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Connect with asyncpg and hand the connection to Alembic's sync API."""
    engine = migrations_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: pgqueuer's schema is rendered live")
asyncio.run(run_async_migrations())
