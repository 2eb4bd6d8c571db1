"""The async SQLAlchemy engine and session factory, bound to the queue schema."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.settings import Settings


def create_engine(
    settings: Settings,
    *,
    pool_size: int | None = None,
    application_name: str | None = None,
    pre_ping: bool = True,
) -> AsyncEngine:
    """An engine whose unqualified tables live in PG_SCHEMA_QUEUE.

    The service's processes get theirs, named, from app.db.connections (the connection plan).
    `pre_ping` tests each connection before lending it (a transaction begun and rolled back):
    a dead one is replaced instead of failing the caller's first statement.
    """
    # Named in pg_stat_activity; tests and the bench leave their own pools unnamed.
    connect_args = (
        {"server_settings": {"application_name": application_name}} if application_name else {}
    )
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size or settings.pg_pool_size,
        max_overflow=settings.pg_max_overflow,
        pool_pre_ping=pre_ping,
        connect_args=connect_args,
        execution_options={"schema_translate_map": {None: settings.pg_schema_queue}},
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit, so handlers can answer from them."""
    return async_sessionmaker(engine, expire_on_commit=False)
