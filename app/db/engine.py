"""The async SQLAlchemy engine and session factory, bound to the queue schema."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.settings import Settings


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    """An engine whose unqualified tables live in PG_SCHEMA_QUEUE."""
    return create_async_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size or settings.pg_pool_size,
        max_overflow=settings.pg_max_overflow,
        pool_pre_ping=True,
        execution_options={"schema_translate_map": {None: settings.pg_schema_queue}},
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit, so handlers can answer from them."""
    return async_sessionmaker(engine, expire_on_commit=False)
