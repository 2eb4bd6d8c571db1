"""The connection plan: every database connection the service's processes open, by purpose.

Each connection is created here and carries an `application_name` naming its purpose
("dataloader <purpose>", plus the worker id for a worker's connections), so
`pg_stat_activity` shows who holds what. docs/connections.md has the same table, the
sizing formula and the pooler setup.

| Purpose       | application_name               | URL     | Size at defaults | Opened by |
|---------------|--------------------------------|---------|------------------|-----------|
| API pool      | dataloader api pool            | pooled  | 4 (PG_POOL_SIZE) | API       |
| job watch     | dataloader job watch           | session | 0-1              | API       |
| pgqueuer      | dataloader pgqueuer <id>       | session | 1                | worker    |
| lock session  | dataloader lock session <id>   | session | 1                | worker    |
| finish writer | dataloader finish writer <id>  | pooled  | 1                | worker    |
| worker pool   | dataloader worker pool <id>    | pooled  | 1 (DL_WORKER_POOL_SIZE) | worker |
| migrations    | dataloader migrations          | session | 1 while migrating | migrate  |

"pooled" connections use DATABASE_URL, which may be a pooler in transaction mode: they keep
no session state (no session lock, no SET, no LISTEN, no prepared statement that outlives
its transaction, no startup parameter but application_name). "session" connections use
DATABASE_DIRECT_URL (or DATABASE_URL when it is unset): they hold session advisory locks,
LISTEN or session settings.

Why each exists:
- API pool: request handlers, the trigger rounds of JobService, the metrics gauges.
- job watch: LISTENs on dl_job_changes for /stream clients; opens with the first client and
  closes 30 s after the last. Its exact name switches migration 0006's trigger on.
- pgqueuer: pgqueuer's QueueManager (LISTEN for wake-ups, dequeue, its heartbeats and log),
  and the leader lock (app.jobs.leadership): a worker that does not lead tries it there.
- lock session: holds every lock_key advisory lock of the process and starts attempts in
  batches; json codecs, and TCP keepalives so the server drops it soon after it falls silent.
- finish writer: final statuses in batches, on its own connection so finishing overlaps
  with starting; json codecs.
- worker pool: heartbeats and progress, retries, postponements, parking, schedule sync at
  start, and the maintenance services (reaper, scheduler, retention) on the leader.
- migrations: Alembic's one connection (`python -m app migrate`, `make run`, tests).

At the defaults an API process holds at most 5 connections and a worker, the leader
included, at most 4. The bench's measurement connections and the tests' fixtures are their
own, outside the plan.
"""

from __future__ import annotations

import json

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.db.engine import create_engine
from app.settings import Settings

# PostgreSQL keeps this many characters of application_name (NAMEDATALEN - 1).
MAX_NAME_LENGTH = 63
PREFIX = "dataloader"

API_POOL = "api pool"
JOB_WATCH = "job watch"
WORKER_POOL = "worker pool"
LOCK_SESSION = "lock session"
FINISH_WRITER = "finish writer"
PGQUEUER = "pgqueuer"
MIGRATIONS = "migrations"
PURPOSES = (API_POOL, JOB_WATCH, WORKER_POOL, LOCK_SESSION, FINISH_WRITER, PGQUEUER, MIGRATIONS)
# The job change trigger (migrations/versions/0006) matches this exact name, so it is
# spelled out; it equals application_name(JOB_WATCH) (tests/unit/test_connection_names.py).
JOB_WATCH_NAME = "dataloader job watch"


def application_name(purpose: str, ident: str | None = None) -> str:
    """'dataloader <purpose>[ <ident>]', cut to what PostgreSQL keeps."""
    name = f"{PREFIX} {purpose}" if not ident else f"{PREFIX} {purpose} {ident}"
    return name[:MAX_NAME_LENGTH]


def is_planned(name: str) -> bool:
    """Whether `name` is an application_name this plan gives out."""
    return any(
        name == application_name(purpose) or name.startswith(f"{PREFIX} {purpose} ")
        for purpose in PURPOSES
    )


def api_pool(settings: Settings) -> AsyncEngine:
    """The API process's pool: request handlers, trigger batcher, metrics gauges."""
    return create_engine(settings, application_name=application_name(API_POOL))


# A worker's pool transactions last milliseconds. One left open longer lost its worker
# (a network partition, a frozen host) in the middle, and its row locks would block whoever
# touches those jobs next (a peer postponing or taking them over, the leader's reaper) until
# the server noticed the dead connection, which without keepalives can take hours. The
# server ends such a session after this long; the worker, if alive, sees a lost connection
# and retries on a new one.
WORKER_IDLE_IN_TRANSACTION_MS = 15_000


def worker_pool(settings: Settings, worker_id: str) -> AsyncEngine:
    """The worker's pool: heartbeats, progress, retries, schedule sync, maintenance.

    Its users hold a connection only for a short transaction, and starts and finishes have
    connections of their own, so the pool need not grow with the worker's concurrency.
    """
    return create_engine(
        settings,
        pool_size=settings.dl_worker_pool_size,
        max_overflow=0,
        application_name=application_name(WORKER_POOL, worker_id),
        session_settings={
            "idle_in_transaction_session_timeout": str(WORKER_IDLE_IN_TRANSACTION_MS)
        },
    )


def migrations_engine(sqlalchemy_url: str) -> AsyncEngine:
    """Alembic's engine: SQLAlchemy's defaults, of which a migration uses one connection."""
    return create_async_engine(
        sqlalchemy_url,
        connect_args={"server_settings": {"application_name": application_name(MIGRATIONS)}},
    )


async def connect_job_watch(dsn: str) -> asyncpg.Connection:
    """The API's LISTEN connection for job changes; its name switches the trigger on."""
    return await _connect(dsn, JOB_WATCH_NAME)


async def connect_lock_session(
    dsn: str, worker_id: str, server_settings: dict[str, str]
) -> asyncpg.Connection:
    """The worker's lock session, with json codecs and the liveness `server_settings`."""
    return await _connect(
        dsn, application_name(LOCK_SESSION, worker_id), server_settings, json_codecs=True
    )


async def connect_finish_writer(
    dsn: str, worker_id: str, *, pooled: bool = False
) -> asyncpg.Connection:
    """The worker's finish writer, with json codecs. It keeps no session state, so it may
    go through a pooler (`pooled`: DATABASE_URL is one, see Settings.behind_pooler)."""
    return await _connect(
        dsn, application_name(FINISH_WRITER, worker_id), json_codecs=True, pooled=pooled
    )


async def connect_pgqueuer(dsn: str, worker_id: str) -> asyncpg.Connection:
    """pgqueuer's own connection: LISTEN, dequeue, heartbeats, its log."""
    return await _connect(dsn, application_name(PGQUEUER, worker_id))


async def _connect(
    dsn: str,
    name: str,
    server_settings: dict[str, str] | None = None,
    *,
    json_codecs: bool = False,
    pooled: bool = False,
) -> asyncpg.Connection:
    """An asyncpg connection named `name`; json/jsonb as Python objects if asked.

    `pooled`: through a pooler in transaction mode, so no named prepared statements (they
    would stay on a server connection that other clients get next).
    """
    connection: asyncpg.Connection = await asyncpg.connect(
        dsn,
        server_settings={**(server_settings or {}), "application_name": name},
        statement_cache_size=0 if pooled else 100,
    )
    if json_codecs:
        try:
            for type_name in ("jsonb", "json"):
                await connection.set_type_codec(
                    type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
                )
        except BaseException:
            connection.terminate()
            raise
    return connection
