"""The connection plan: every database connection the service's processes open, by purpose.

Each connection is created here and carries an `application_name` naming its purpose
("dataloader <purpose>", plus the worker id for a worker's connections), so
`pg_stat_activity` shows who holds what. Sizes at the defaults (PG_POOL_SIZE=10,
PG_MAX_OVERFLOW=10); docs/connections.md has the same table.

| Purpose          | application_name                  | Kind   | Size         | Opened by |
|------------------|-----------------------------------|--------|--------------|-----------|
| API pool         | dataloader api pool               | pooled | 10 + 10      | API       |
| job watch        | dataloader job watch              | direct | 0-1          | API       |
| worker pool      | dataloader worker pool <id>       | pooled | 10 + 10      | worker    |
| lock session     | dataloader lock session <id>      | direct | 1            | worker    |
| finish writer    | dataloader finish writer <id>     | direct | 1            | worker    |
| pgqueuer         | dataloader pgqueuer <id>          | direct | 1            | worker    |
| maintenance pool | dataloader maintenance pool <id>  | pooled | 2 + 10       | worker    |
| leader           | dataloader leader <id>            | direct | 0-1          | worker    |
| migrations       | dataloader migrations             | pooled | 1 (in use)   | migrate   |

Why each exists:
- API pool: request handlers, the trigger batcher and the metrics gauges (one per uvicorn
  process).
- job watch: LISTENs on dl_job_changes for /stream clients; opens with the first client and
  closes 30 s after the last. Its exact name switches migration 0006's trigger on.
- worker pool: schedule sync at start, heartbeats and progress, retries, postponements and
  parking (starts and finishes go through the two connections below).
- lock session: holds every lock_key advisory lock of the process and starts attempts in
  batches; json codecs, and TCP keepalives so the server drops it soon after it falls silent.
- finish writer: final statuses in batches, on its own connection so finishing overlaps
  with starting; json codecs.
- pgqueuer: pgqueuer's QueueManager (LISTEN for wake-ups, dequeue, its heartbeats and log).
- maintenance pool: reaper, scheduler and retention, used on the leader only; its own pool
  so a flood of runner writes cannot delay the leader until it loses its session.
- leader: holds the leader advisory lock. A worker that does not lead opens one each reaper
  period to try the lock and closes it at once when the lock is taken.
- migrations: Alembic's one connection (`python -m app migrate`, `make run`, tests).

At the defaults an API process holds up to 21, a worker up to 23, the leader up to 36.
The bench's measurement connections and the tests' fixtures are their own, outside the plan.
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
MAINTENANCE_POOL = "maintenance pool"
LEADER = "leader"
MIGRATIONS = "migrations"
PURPOSES = (
    API_POOL,
    JOB_WATCH,
    WORKER_POOL,
    LOCK_SESSION,
    FINISH_WRITER,
    PGQUEUER,
    MAINTENANCE_POOL,
    LEADER,
    MIGRATIONS,
)
# The job change trigger (migrations/versions/0006) matches this exact name, so it is
# spelled out; it equals application_name(JOB_WATCH) (tests/unit/test_connection_names.py).
JOB_WATCH_NAME = "dataloader job watch"
# The leader's services each hold a connection only during a statement: a small pool, with
# overflow as configured for the moments when two or three of them run at once.
MAINTENANCE_POOL_SIZE = 2


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


def worker_pool(settings: Settings, worker_id: str) -> AsyncEngine:
    """The worker's pool: heartbeats, progress, retries, postponements, schedule sync."""
    return create_engine(settings, application_name=application_name(WORKER_POOL, worker_id))


def maintenance_pool(settings: Settings, worker_id: str) -> AsyncEngine:
    """The leader's pool for reaper, scheduler and retention, apart from the runner's."""
    return create_engine(
        settings,
        pool_size=MAINTENANCE_POOL_SIZE,
        application_name=application_name(MAINTENANCE_POOL, worker_id),
        # An idle leader's passes would spend two of every five statements on the ping. A
        # pass whose connection turns out dead makes the pool drop every connection it has
        # and runs once more (worker.maintenance.service), which the ping would have spared.
        pre_ping=False,
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


async def connect_finish_writer(dsn: str, worker_id: str) -> asyncpg.Connection:
    """The worker's finish writer, with json codecs."""
    return await _connect(dsn, application_name(FINISH_WRITER, worker_id), json_codecs=True)


async def connect_pgqueuer(dsn: str, worker_id: str) -> asyncpg.Connection:
    """pgqueuer's own connection: LISTEN, dequeue, heartbeats, its log."""
    return await _connect(dsn, application_name(PGQUEUER, worker_id))


async def connect_leader(dsn: str, worker_id: str | None) -> asyncpg.Connection:
    """A session to try (and, once won, hold) the leader lock on."""
    return await _connect(dsn, application_name(LEADER, worker_id))


async def _connect(
    dsn: str,
    name: str,
    server_settings: dict[str, str] | None = None,
    *,
    json_codecs: bool = False,
) -> asyncpg.Connection:
    """A direct asyncpg connection named `name`; json/jsonb as Python objects if asked."""
    connection: asyncpg.Connection = await asyncpg.connect(
        dsn, server_settings={**(server_settings or {}), "application_name": name}
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
