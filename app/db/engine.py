"""The async SQLAlchemy engine and session factory, bound to the queue schema."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.settings import Settings

# Asked of a pooler in transaction mode, which hands each transaction whichever server
# connection is free: a statement prepared by name on one may be missing on the next, or
# another client's statement of that name may be there (PgBouncer 1.18 keeps no prepared
# statements of its own). Unnamed statements live only until the next one on the same
# server connection, which, inside SQLAlchemy's transaction, is still this client's.
POOLER_CONNECT_ARGS: dict[str, Any] = {
    "statement_cache_size": 0,
    "prepared_statement_cache_size": 0,
    "prepared_statement_name_func": lambda: "",
}


def create_engine(
    settings: Settings,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    application_name: str | None = None,
    session_settings: dict[str, str] | None = None,
) -> AsyncEngine:
    """An engine whose unqualified tables live in PG_SCHEMA_QUEUE.

    The service's processes get theirs, named, from app.db.connections (the connection plan).
    `session_settings` go in the startup packet of direct connections only: a pooler
    refuses them, and its own settings take their place (docs/connections.md#poolers).
    When DATABASE_DIRECT_URL is set, DATABASE_URL is taken to be a pooler in transaction
    mode, and the engine prepares no statement that outlives its transaction.
    """
    connect_args: dict[str, Any] = dict(POOLER_CONNECT_ARGS) if settings.behind_pooler else {}
    # Named in pg_stat_activity (a pooler passes application_name on); tests and the bench
    # leave their own pools unnamed. Nothing else goes in the startup packet: a pooler
    # refuses startup parameters it does not know.
    server_settings: dict[str, str] = {}
    if application_name:
        server_settings["application_name"] = application_name
    if session_settings and not settings.behind_pooler:
        server_settings.update(session_settings)
    if server_settings:
        connect_args["server_settings"] = server_settings
    engine = create_async_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size or settings.pg_pool_size,
        max_overflow=settings.pg_max_overflow if max_overflow is None else max_overflow,
        connect_args=connect_args,
        execution_options={"schema_translate_map": {None: settings.pg_schema_queue}},
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Replace a pooled connection the server has already closed, without a round trip.

    A ping per checkout (`pool_pre_ping`) costs a BEGIN/SELECT/ROLLBACK every time, which
    dominated an idle worker's statements. A restarted or killed server closes the socket,
    and asyncpg notices that by itself; a connection lost silently (a partition) fails its
    statement instead, which the caller treats as an unreachable database, and the pool
    then drops it.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("the server closed this pooled connection")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit, so handlers can answer from them."""
    return async_sessionmaker(engine, expire_on_commit=False)
