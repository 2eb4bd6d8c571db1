"""dl_enqueue(): a job made from SQL in the caller's transaction, exactly as the trigger makes it.

From psql, a plain asyncpg transaction and a psycopg one: a commit leaves the job, its event
and its dispatch, and a real worker runs it; a rollback leaves nothing. Its field rules,
idempotency and rows match the Python insert the HTTP trigger uses (app.jobs.manager).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.enqueue_function import PYTHON_WHITESPACE, install_statements
from app.db.pgqueuer_tables import DISPATCH_CHANNEL
from app.domain.errors import IdempotencyConflictError, InvalidJobError
from app.domain.spec import JobCreate, validated
from app.jobs.enqueue import enqueue_in_session
from app.pipelines.registry import load_pipelines
from app.settings import Settings
from tests.support.workers import WorkerFleet, wait_until

QUEUE = "etl.default"
ENQUEUE = (
    "SELECT job_id, status, created FROM dl_enqueue("
    "queue => 'etl.default', task => 'noop', lock_key => $1, args => '{\"steps\": 1}')"
)
# The columns the two paths fill alike; ids and clock readings differ by nature.
JOB_COLUMNS = (
    "queue, task, args, idempotency_key, lock_key, partition_key, priority, available_at,"
    " status, attempt, max_attempts, lease_ttl_sec, producer, consumer_group,"
    " request_fingerprint, cancel_requested, progress, error, worker_id, started_at, finished_at,"
    " concurrency_key, concurrency_limit, rate_key, coalescing"
)


@pytest.fixture(autouse=True)
def _pipelines(settings: Settings) -> None:
    """The built-ins, for the Python path's task check."""
    load_pipelines(settings.dl_pipeline_modules)


async def counts(db: asyncpg.Connection) -> dict[str, int]:
    """Committed rows of every table a new job writes."""
    return {
        table: int(await db.fetchval(f"SELECT count(*) FROM {table}"))
        for table in ("dl_jobs", "dl_job_events", "pgqueuer", "pgqueuer_log")
    }


NOTHING = {"dl_jobs": 0, "dl_job_events": 0, "pgqueuer": 0, "pgqueuer_log": 0}
ONE_JOB = {"dl_jobs": 1, "dl_job_events": 1, "pgqueuer": 1, "pgqueuer_log": 1}


def psql(dsn: str, sql: str) -> str:
    """Run `sql` through the psql command line (one session), stopping at the first error."""
    done = subprocess.run(
        ["psql", dsn, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def enqueue_committed(client: str, dsn: str, lock_key: str) -> uuid.UUID:
    """dl_enqueue() next to a business write in one transaction of `client`, committed."""
    if client == "psql":
        out = psql(
            dsn,
            "BEGIN; CREATE TABLE orders(id int); INSERT INTO orders VALUES (1);"
            f" SELECT job_id FROM dl_enqueue(queue => 'etl.default', task => 'noop',"
            f" lock_key => '{lock_key}', args => '{{\"steps\": 1}}'); COMMIT;",
        )
        return uuid.UUID(out.split()[0])
    if client == "asyncpg":
        connection = await asyncpg.connect(dsn)
        try:
            async with connection.transaction():
                await connection.execute(
                    "CREATE TABLE orders(id int); INSERT INTO orders VALUES (1)"
                )
                row = await connection.fetchrow(ENQUEUE, lock_key)
            return uuid.UUID(str(row["job_id"]))
        finally:
            await connection.close()
    async with await psycopg.AsyncConnection.connect(dsn) as pconn:
        async with pconn.transaction():
            await pconn.execute("CREATE TABLE orders(id int)")
            await pconn.execute("INSERT INTO orders VALUES (1)")
            cursor = await pconn.execute(ENQUEUE.replace("$1", "%s"), (lock_key,))
            found = await cursor.fetchone()
        assert found is not None
        return uuid.UUID(str(found[0]))


async def enqueue_rolled_back(client: str, dsn: str, lock_key: str) -> None:
    """dl_enqueue() in a transaction of `client` that rolls back, after seeing its job."""
    if client == "psql":
        out = psql(
            dsn,
            "BEGIN; SELECT created FROM dl_enqueue(queue => 'etl.default', task => 'noop',"
            f" lock_key => '{lock_key}'); ROLLBACK;",
        )
        assert out.split() == ["t"]
        return
    if client == "asyncpg":
        connection = await asyncpg.connect(dsn)
        try:
            transaction = connection.transaction()
            await transaction.start()
            assert (await connection.fetchrow(ENQUEUE, lock_key))["created"] is True
            await transaction.rollback()
        finally:
            await connection.close()
        return
    async with await psycopg.AsyncConnection.connect(dsn) as pconn:
        cursor = await pconn.execute(ENQUEUE.replace("$1", "%s"), (lock_key,))
        found = await cursor.fetchone()
        assert found is not None
        assert found[2] is True
        await pconn.rollback()


CLIENTS = ["psql", "asyncpg", "psycopg"]


@pytest.mark.parametrize("client", CLIENTS)
async def test_dl_enqueue_commit_runs_the_job_on_a_real_worker(
    client: str, database_dsn: str, db: asyncpg.Connection, fleet: WorkerFleet
) -> None:
    await fleet.start_ready("w1", queues={QUEUE: 1})

    job_id = await enqueue_committed(client, database_dsn, f"sql:{client}")

    assert await db.fetchval("SELECT count(*) FROM orders") == 1

    async def finished() -> str | None:
        status = await db.fetchval("SELECT status FROM dl_jobs WHERE job_id = $1", job_id)
        return status if status in ("succeeded", "failed", "lost") else None

    status = await wait_until(finished, timeout=30, what="the job to finish")
    assert status == "succeeded"
    events = await db.fetch("SELECT event FROM dl_job_events WHERE job_id = $1 ORDER BY id", job_id)
    assert [row["event"] for row in events] == ["queued", "started", "succeeded"]


@pytest.mark.parametrize("client", CLIENTS)
async def test_dl_enqueue_rollback_leaves_no_trace(
    client: str, database_dsn: str, db: asyncpg.Connection
) -> None:
    await db.execute(f"LISTEN {DISPATCH_CHANNEL}")
    heard: list[str] = []
    await db.add_listener(DISPATCH_CHANNEL, lambda *args: heard.append(args[3]))

    await enqueue_rolled_back(client, database_dsn, f"sql:{client}")
    await db.execute("SELECT 1")  # a round trip: any notice sent would be delivered by now

    assert await counts(db) == NOTHING
    assert heard == []


async def test_dl_enqueue_commit_sends_the_dispatch_notice(
    db: asyncpg.Connection, database_dsn: str
) -> None:
    heard: list[dict[str, Any]] = []
    await db.add_listener(DISPATCH_CHANNEL, lambda *args: heard.append(json.loads(args[3])))
    writer = await asyncpg.connect(database_dsn)
    try:
        async with writer.transaction():
            await writer.fetchrow(ENQUEUE, "notice")
        await wait_until(lambda: _value(heard), timeout=5, what="the dispatch notice")
    finally:
        await writer.close()

    (notice,) = heard
    assert notice["kind"] == "dispatch"
    assert notice["queues"] == {QUEUE: 1}
    assert notice["due"] == {QUEUE: 1}
    assert notice["id"] == await db.fetchval("SELECT id FROM pgqueuer")


async def _value(items: list[Any]) -> list[Any] | None:
    return items or None


# --- idempotency --------------------------------------------------------------------------


async def test_dl_enqueue_same_key_same_request_returns_the_first_job(
    db: asyncpg.Connection,
) -> None:
    call = (
        "SELECT * FROM dl_enqueue(queue => 'etl.default', task => 'noop', lock_key => 'k',"
        " idempotency_key => 'order:1', args => $1::jsonb)"
    )
    first = await db.fetchrow(call, '{"a": 1, "b": [1, 2]}')
    # Key order and spacing are no part of the request.
    again = await db.fetchrow(call, '{ "b": [1,2], "a": 1 }')

    assert (first["status"], first["created"]) == ("queued", True)
    assert (again["job_id"], again["status"], again["created"]) == (
        first["job_id"],
        "queued",
        False,
    )
    assert await counts(db) == ONE_JOB


@pytest.mark.parametrize(
    "change",
    [
        "args => '{\"a\": 1.0}'",  # 1 and 1.0 differ, as the pipeline sees them
        "lock_key => 'other'",
        "priority => 99",
        "available_at => '2030-01-01T00:00:00Z'",
        "max_attempts => 4",
        "lease_ttl_sec => 61",
        "partition_key => 'p'",
        "producer => 'shop'",
        "consumer_group => 'g'",
        "queue => 'etl.other'",
        "task => 'other'",
    ],
)
async def test_dl_enqueue_same_key_different_request_raises_naming_key_and_job(
    db: asyncpg.Connection, change: str
) -> None:
    base = {"queue": "'etl.default'", "task": "'noop'", "lock_key": "'k'", "args": "'{\"a\": 1}'"}
    name, value = change.split(" => ")
    first = await db.fetchrow(_call({**base, "idempotency_key": "'order:1'"}))

    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await db.fetchrow(_call({**base, name: value, "idempotency_key": "'order:1'"}))

    assert raised.value.sqlstate == "23505"
    assert "'order:1'" in raised.value.message
    assert str(first["job_id"]) in raised.value.message
    assert raised.value.constraint_name == "uq_dl_jobs_idempotency_key"
    assert await counts(db) == ONE_JOB


def _call(fields: dict[str, str]) -> str:
    named = ", ".join(f"{name} => {value}" for name, value in fields.items())
    return f"SELECT * FROM dl_enqueue({named})"


async def test_dl_enqueue_and_python_insert_share_one_idempotency_rule(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """A key taken by either path finds its job from the other with the same request."""
    spec = JobCreate(
        queue=QUEUE,
        task="noop",
        lock_key="k",
        args={"steps": 2, "nested": {"b": 1, "a": [1.5, "x"]}},
        idempotency_key="from-python",
        available_at=datetime(2030, 1, 1, 12, 30, 0, 123456, tzinfo=UTC),
    )
    async with sessions() as session, session.begin():
        made = await enqueue_in_session(session, spec, settings)
    sql = (
        "SELECT * FROM dl_enqueue(queue => 'etl.default', task => 'noop', lock_key => 'k',"
        " args => $1::jsonb, idempotency_key => $2, available_at => $3)"
    )
    args = '{"nested": {"a": [1.5, "x"], "b": 1}, "steps": 2}'
    found = await db.fetchrow(sql, args, "from-python", spec.available_at)
    assert (found["job_id"], found["created"]) == (made.job_id, False)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetchrow(sql, args, "from-python", None)  # an omitted available_at differs

    from_sql = await db.fetchrow(sql, args, "from-sql", spec.available_at)
    spec.idempotency_key = "from-sql"
    async with sessions() as session, session.begin():
        again = await enqueue_in_session(session, spec, settings)
    assert (again.job_id, again.created) == (from_sql["job_id"], False)
    spec.priority = 1
    async with sessions() as session, session.begin():
        with pytest.raises(IdempotencyConflictError):
            await enqueue_in_session(session, spec, settings)


# --- field rules ----------------------------------------------------------------------------

VALID = {"queue": "'etl.default'", "task": "'noop'", "lock_key": "'k'"}
LONG = "repeat('x', {})"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("queue", "NULL"),
        ("queue", "''"),
        ("queue", "'etl default'"),
        ("queue", "'paused/etl'"),
        ("queue", LONG.format(101)),
        ("task", "NULL"),
        ("task", "'no op'"),
        ("task", LONG.format(201)),
        ("lock_key", "NULL"),
        ("lock_key", "''"),
        ("lock_key", "'   '"),
        ("lock_key", LONG.format(501)),
        ("idempotency_key", "''"),
        ("idempotency_key", "E'\\t'"),
        ("idempotency_key", LONG.format(501)),
        ("idempotency_key", "'dl:schedule:x'"),
        ("idempotency_key", "U&' \\3000DL:x'"),  # after blanks, in any case
        ("partition_key", "' '"),
        ("partition_key", LONG.format(201)),
        ("producer", "''"),
        ("producer", LONG.format(201)),
        ("producer", "'Dl:schedule:nightly'"),
        ("consumer_group", "U&'\\00a0'"),
        ("consumer_group", LONG.format(201)),
        ("rate_key", "''"),
        ("rate_key", "'  '"),
        ("rate_key", LONG.format(501)),
        ("priority", "-1"),
        ("priority", "10001"),
        ("priority", "NULL"),
        ("max_attempts", "0"),
        ("max_attempts", "101"),
        ("max_attempts", "NULL"),
        ("lease_ttl_sec", "0"),
        ("lease_ttl_sec", "86401"),
        ("available_at", "'1969-12-31T23:59:59Z'"),
        ("available_at", "'2200-01-01T00:00:00Z'"),
        ("args", "NULL"),
        ("args", "'[1]'"),
        ("args", "'\"text\"'"),
        ("args", "(repeat('{\"a\": ', 32) || '1' || repeat('}', 32))::jsonb"),
    ],
)
async def test_dl_enqueue_refuses_a_field_that_breaks_its_rule(
    db: asyncpg.Connection, field: str, value: str
) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError) as raised:
        await db.fetchrow(_call({**VALID, field: value}))

    assert raised.value.sqlstate == "22023"
    assert raised.value.column_name == field
    assert f"invalid {field}:" in raised.value.message
    assert f"(field `{field}`)" in raised.value.message
    assert await counts(db) == NOTHING


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("queue", LONG.format(100)),
        ("task", "'load.cbr:rates-v2_x'"),
        ("lock_key", LONG.format(500)),
        ("lock_key", "U&' \\200bx'"),  # a zero-width space is not white space to Python
        ("idempotency_key", "'ddl:x'"),
        ("producer", "'shop dl:'"),
        ("priority", "0"),
        ("priority", "10000"),
        ("max_attempts", "100"),
        ("lease_ttl_sec", "86400"),
        ("available_at", "'1970-01-01T00:00:00Z'"),
        ("args", "(repeat('{\"a\": ', 31) || '1' || repeat('}', 31))::jsonb"),
    ],
)
async def test_dl_enqueue_accepts_the_edges_of_each_rule(
    db: asyncpg.Connection, field: str, value: str
) -> None:
    row = await db.fetchrow(_call({**VALID, field: value}))

    assert row["created"] is True


@pytest.mark.parametrize(
    ("call", "value"),
    [
        ("SELECT * FROM dl_enqueue(queue => 'q', task => 't', lock_key => $1)", "a\x00b"),
        (
            "SELECT * FROM dl_enqueue(queue => 'q', task => 't', lock_key => 'k',"
            " args => $1::jsonb)",
            '{"a": "\\u0000"}',
        ),
    ],
    ids=["lock_key", "args"],
)
async def test_dl_enqueue_nul_is_refused_by_postgresql_itself(
    db: asyncpg.Connection, call: str, value: str
) -> None:
    """PostgreSQL's text and jsonb cannot hold NUL: the call fails before the function runs."""
    with pytest.raises(asyncpg.PostgresError) as raised:
        await db.fetchrow(call, value)

    assert raised.value.sqlstate in ("22021", "22P05")
    assert await counts(db) == NOTHING


async def test_dl_enqueue_white_space_is_what_python_calls_white_space(
    db: asyncpg.Connection,
) -> None:
    """Each rule's "visible character" and `dl:` after blanks agree with app.domain.spec."""
    for char in PYTHON_WHITESPACE:
        assert char.isspace()
        with pytest.raises(InvalidJobError):  # the Python rule, as the trigger checks it
            validated(JobCreate(queue="q", task="t", lock_key=char * 2))
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await db.fetchrow(
                "SELECT * FROM dl_enqueue(queue => 'q', task => 't', lock_key => $1)", char * 2
            )
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await db.fetchrow(
                "SELECT * FROM dl_enqueue(queue => 'q', task => 't', lock_key => 'k',"
                " producer => $1)",
                char + "dl:x",
            )
    everything = {chr(code) for code in range(0x3001) if chr(code).isspace()}
    assert everything == set(PYTHON_WHITESPACE)


# --- one row shape --------------------------------------------------------------------------


async def test_dl_enqueue_writes_the_rows_the_python_insert_writes(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Same input, same dl_jobs row, event, dispatch and dispatch log (ids and clocks aside)."""
    spec = JobCreate(
        queue=QUEUE,
        task="noop",
        lock_key="same",
        args={"steps": 1, "x": [1, {"y": None}]},
        partition_key="p1",
        priority=7,
        available_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
        max_attempts=3,
        lease_ttl_sec=45,
        producer="shop",
        consumer_group="g1",
    )
    async with sessions() as session, session.begin():
        python_job = (await enqueue_in_session(session, spec, settings)).job_id
    sql_job = await db.fetchval(
        "SELECT job_id FROM dl_enqueue(queue => $1, task => $2, lock_key => $3, args => $4,"
        " partition_key => $5, priority => $6, available_at => $7, max_attempts => $8,"
        " lease_ttl_sec => $9, producer => $10, consumer_group => $11)",
        spec.queue,
        spec.task,
        spec.lock_key,
        json.dumps(spec.args),
        spec.partition_key,
        spec.priority,
        spec.available_at,
        spec.max_attempts,
        spec.lease_ttl_sec,
        spec.producer,
        spec.consumer_group,
    )

    python_rows, sql_rows = [await _rows_of(db, job) for job in (python_job, sql_job)]
    assert sql_rows == python_rows
    assert python_rows["job"]["request_fingerprint"] is not None


async def test_dl_enqueue_defaults_are_the_python_defaults(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    async with sessions() as session, session.begin():
        spec = JobCreate(queue=QUEUE, task="noop", lock_key="d")
        python_job = (await enqueue_in_session(session, spec, settings)).job_id
    sql_job = await db.fetchval(
        "SELECT job_id FROM dl_enqueue(queue => 'etl.default', task => 'noop', lock_key => 'd')"
    )

    python_rows, sql_rows = [await _rows_of(db, job) for job in (python_job, sql_job)]
    for rows in (python_rows, sql_rows):
        rows["job"].pop("available_at")  # "now" when omitted, different for each
    assert sql_rows == python_rows
    assert (python_rows["job"]["priority"], python_rows["job"]["max_attempts"]) == (100, 5)
    assert python_rows["job"]["lease_ttl_sec"] == settings.dl_default_lease_ttl_sec == 60


async def _rows_of(db: asyncpg.Connection, job_id: uuid.UUID) -> dict[str, Any]:
    """What one job wrote, without ids, clock readings and the job's own id in its payload."""
    job = await db.fetchrow(
        f"SELECT {JOB_COLUMNS}, pgq_job_id FROM dl_jobs WHERE job_id = $1", job_id
    )
    events = await db.fetch(
        "SELECT event, attempt, details FROM dl_job_events WHERE job_id = $1", job_id
    )
    dispatch = await db.fetchrow(
        "SELECT priority, entrypoint, status, execute_after, queue_manager_id, dedupe_key,"
        " headers, attempts, payload = uuid_send($2) AS carries_job_id"
        " FROM pgqueuer WHERE id = $1",
        job["pgq_job_id"],
        job_id,
    )
    logged = await db.fetch(
        "SELECT status, entrypoint, priority FROM pgqueuer_log WHERE job_id = $1",
        job["pgq_job_id"],
    )
    job_fields = dict(job)
    job_fields.pop("pgq_job_id")
    dispatch_fields = dict(dispatch)
    # Due when the job is: its available_at, which is the insert's now() when omitted.
    dispatch_fields["due_at_available_at"] = (
        dispatch_fields.pop("execute_after") == job_fields["available_at"]
    )
    return {
        "job": job_fields,
        "events": [dict(row) for row in events],
        "dispatch": dispatch_fields,
        "log": [dict(row) for row in logged],
    }


# --- one owner --------------------------------------------------------------------------------


async def test_dl_enqueue_installed_functions_are_what_the_code_renders(
    db: asyncpg.Connection,
) -> None:
    """A change to the rendering (or to dispatch_ctes) needs a migration that reinstalls them."""
    for statement in install_statements("public"):
        name = statement.split("FUNCTION ", 1)[1].split("(", 1)[0].split(".")[1]
        tag = statement.split("AS $", 1)[1].split("$", 1)[0]
        rendered = statement.split(f"${tag}$", 2)[1]
        installed = await db.fetchval("SELECT prosrc FROM pg_proc WHERE proname = $1", name)
        assert installed == rendered, f"{name} differs from app.db.enqueue_function"


async def test_dl_enqueue_two_sessions_racing_one_key_make_one_job(database_dsn: str) -> None:
    connections = [await asyncpg.connect(database_dsn) for _ in range(4)]
    try:
        call = (
            "SELECT job_id FROM dl_enqueue(queue => 'etl.default', task => 'noop',"
            " lock_key => 'race', idempotency_key => 'race')"
        )
        ids = await asyncio.gather(*(c.fetchval(call) for c in connections))
        assert len(set(ids)) == 1
    finally:
        for connection in connections:
            await connection.close()


# --- concurrency groups (migration 0013) -------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "field"),
    [
        ({"concurrency_key": "'g'"}, "concurrency_limit"),
        ({"concurrency_limit": "3"}, "concurrency_key"),
        ({"concurrency_key": "'g'", "concurrency_limit": "0"}, "concurrency_limit"),
        ({"concurrency_key": "'g'", "concurrency_limit": "1001"}, "concurrency_limit"),
        ({"concurrency_key": "''", "concurrency_limit": "3"}, "concurrency_key"),
        ({"concurrency_key": "'   '", "concurrency_limit": "3"}, "concurrency_key"),
        ({"concurrency_key": LONG.format(501), "concurrency_limit": "3"}, "concurrency_key"),
    ],
    ids=["key-alone", "limit-alone", "limit-0", "limit-1001", "key-empty", "key-blank", "key-long"],
)
async def test_dl_enqueue_refuses_half_or_a_bad_concurrency_group_naming_the_field(
    db: asyncpg.Connection, group: dict[str, str], field: str
) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError) as raised:
        await db.fetchrow(_call({**VALID, **group}))

    assert raised.value.sqlstate == "22023"
    assert raised.value.column_name == field
    assert f"(field `{field}`)" in raised.value.message
    assert await counts(db) == NOTHING


async def test_dl_enqueue_with_a_group_writes_the_rows_and_fingerprint_of_the_python_insert(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    spec = JobCreate(
        queue=QUEUE,
        task="noop",
        lock_key="grouped",
        concurrency_key="partner-api",
        concurrency_limit=1000,
        idempotency_key="grouped-python",
        available_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
    )
    async with sessions() as session, session.begin():
        python_job = (await enqueue_in_session(session, spec, settings)).job_id
    call = (
        "SELECT * FROM dl_enqueue(queue => 'etl.default', task => 'noop',"
        " lock_key => 'grouped', idempotency_key => $1, concurrency_key => $2,"
        " concurrency_limit => $3, available_at => $4)"
    )
    when = spec.available_at
    sql_job = (await db.fetchrow(call, "grouped-sql", "partner-api", 1000, when))["job_id"]

    python_rows, sql_rows = [await _rows_of(db, job) for job in (python_job, sql_job)]
    for rows in (python_rows, sql_rows):
        rows["job"].pop("idempotency_key")
    assert sql_rows == python_rows
    assert (python_rows["job"]["concurrency_key"], python_rows["job"]["concurrency_limit"]) == (
        "partner-api",
        1000,
    )
    # One rule for both paths: the same request finds the job, another group is a conflict.
    found = await db.fetchrow(call, "grouped-python", "partner-api", 1000, when)
    assert (found["job_id"], found["created"]) == (python_job, False)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetchrow(call, "grouped-python", "partner-api", 999, when)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetchrow(_call({**VALID, "idempotency_key": "'grouped-python'"}))


# --- rate keys (migration 0014) ---------------------------------------------------------------


async def test_dl_enqueue_with_a_rate_key_writes_the_rows_and_fingerprint_of_the_python_insert(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    spec = JobCreate(
        queue=QUEUE,
        task="noop",
        lock_key="rated",
        rate_key="partner-a",
        idempotency_key="rated-python",
        available_at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
    )
    async with sessions() as session, session.begin():
        python_job = (await enqueue_in_session(session, spec, settings)).job_id
    call = (
        "SELECT * FROM dl_enqueue(queue => 'etl.default', task => 'noop',"
        " lock_key => 'rated', idempotency_key => $1, rate_key => $2, available_at => $3)"
    )
    when = spec.available_at
    sql_job = (await db.fetchrow(call, "rated-sql", "partner-a", when))["job_id"]

    python_rows, sql_rows = [await _rows_of(db, job) for job in (python_job, sql_job)]
    for rows in (python_rows, sql_rows):
        rows["job"].pop("idempotency_key")
    assert sql_rows == python_rows
    assert python_rows["job"]["rate_key"] == "partner-a"
    # The rate_key is part of the request: the same one finds the job, another conflicts.
    found = await db.fetchrow(call, "rated-python", "partner-a", when)
    assert (found["job_id"], found["created"]) == (python_job, False)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetchrow(call, "rated-python", "partner-b", when)


# --- coalescing (migration 0016) ---------------------------------------------------------------

COALESCING = {**VALID, "coalescing": "true"}


async def test_dl_enqueue_coalescing_joins_the_queued_job_and_says_what_differs(
    db: asyncpg.Connection,
) -> None:
    first = await db.fetchrow(_call(COALESCING))
    joined = await db.fetchrow(
        _call({**COALESCING, "args": "'{\"since\": 1}'", "producer": "'shop'"})
    )
    plain = await db.fetchrow(_call(VALID))

    assert (first["created"], first["coalesced"], first["differs"]) == (True, False, None)
    assert (joined["job_id"], joined["status"], joined["created"]) == (
        first["job_id"],
        "queued",
        False,
    )
    assert (joined["coalesced"], joined["differs"]) == (True, ["args", "producer"])
    assert (plain["created"], plain["coalesced"], plain["differs"]) == (True, False, None)
    assert plain["job_id"] != first["job_id"]
    events = await db.fetch(
        "SELECT event, details FROM dl_job_events WHERE job_id = $1 ORDER BY id", first["job_id"]
    )
    assert [(e["event"], json.loads(e["details"])) for e in events] == [
        ("queued", {"queue": "etl.default", "task": "noop"}),
        ("coalesced", {"differs": ["args", "producer"], "producer": "shop"}),
    ]
    assert await db.fetchval("SELECT args FROM dl_jobs WHERE job_id = $1", first["job_id"]) == "{}"


async def test_dl_enqueue_refuses_a_null_coalescing_naming_the_field(
    db: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError) as raised:
        await db.fetchrow(_call({**VALID, "coalescing": "NULL"}))

    assert raised.value.column_name == "coalescing"
    assert "(field `coalescing`)" in raised.value.message
    assert await counts(db) == NOTHING


async def test_dl_enqueue_and_python_insert_join_each_others_jobs_and_write_the_same_rows(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    def spec(lock_key: str) -> JobCreate:
        return JobCreate(queue=QUEUE, task="noop", lock_key=lock_key, coalescing=True)

    async with sessions() as session, session.begin():
        python_job = (await enqueue_in_session(session, spec("from-python"), settings)).job_id
    sql_job = (await db.fetchrow(_call({**COALESCING, "lock_key": "'from-sql'"})))["job_id"]

    joined_by_sql = await db.fetchrow(_call({**COALESCING, "lock_key": "'from-python'"}))
    async with sessions() as session, session.begin():
        joined_by_python = await enqueue_in_session(session, spec("from-sql"), settings)

    assert (joined_by_sql["job_id"], joined_by_sql["coalesced"]) == (python_job, True)
    assert (joined_by_python.job_id, joined_by_python.coalesced) == (sql_job, True)
    python_rows, sql_rows = [await _rows_of(db, job) for job in (python_job, sql_job)]
    for rows in (python_rows, sql_rows):
        # The lock_key differs, and so the fingerprint; the next lines compare those.
        rows["job"].pop("lock_key")
        rows["job"].pop("request_fingerprint")
        rows["job"].pop("available_at")  # "now" when omitted, different for each
    assert sql_rows == python_rows
    assert python_rows["job"]["coalescing"] is True
    # One fingerprint rule: a key taken by a coalescing Python trigger finds its job from SQL.
    keyed = msgspec.structs.replace(spec("keyed"), idempotency_key="refresh:keyed")
    async with sessions() as session, session.begin():
        made = await enqueue_in_session(session, keyed, settings)
    found = await db.fetchrow(
        _call({**COALESCING, "lock_key": "'keyed'", "idempotency_key": "'refresh:keyed'"})
    )
    assert (found["job_id"], found["created"], found["coalesced"]) == (made.job_id, False, False)


async def test_dl_enqueue_coalescing_sessions_racing_make_one_job(database_dsn: str) -> None:
    connections = [await asyncpg.connect(database_dsn) for _ in range(6)]
    try:
        answers = await asyncio.gather(*(c.fetchrow(_call(COALESCING)) for c in connections))
    finally:
        for connection in connections:
            await connection.close()

    assert len({answer["job_id"] for answer in answers}) == 1
    assert sorted(answer["created"] for answer in answers) == [False] * 5 + [True]
    assert sum(answer["coalesced"] for answer in answers) == 5


async def test_dl_enqueue_key_reused_with_the_other_coalescing_choice_is_a_conflict(
    db: asyncpg.Connection,
) -> None:
    first = await db.fetchrow(_call({**COALESCING, "idempotency_key": "'refresh:1'"}))
    again = await db.fetchrow(_call({**COALESCING, "idempotency_key": "'refresh:1'"}))

    assert (again["job_id"], again["created"], again["coalesced"]) == (
        first["job_id"],
        False,
        False,
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetchrow(_call({**VALID, "idempotency_key": "'refresh:1'"}))


async def test_dl_enqueue_coalescing_with_a_rate_key_shares_the_python_fingerprint_and_names_it(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Both added fields count in the request on both paths; a join names a rate_key apart."""
    spec = JobCreate(
        queue=QUEUE,
        task="noop",
        lock_key="rated-refresh",
        rate_key="partner-a",
        concurrency_key="partner-api",
        concurrency_limit=2,
        coalescing=True,
        idempotency_key="rated-refresh:1",
    )
    async with sessions() as session, session.begin():
        made = await enqueue_in_session(session, spec, settings)
    fields = {
        **COALESCING,
        "lock_key": "'rated-refresh'",
        "concurrency_key": "'partner-api'",
        "concurrency_limit": "2",
        "idempotency_key": "'rated-refresh:1'",
    }

    found = await db.fetchrow(_call({**fields, "rate_key": "'partner-a'"}))
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetchrow(_call({**fields, "rate_key": "'partner-b'"}))
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetchrow(_call({**fields, "rate_key": "'partner-a'", "coalescing": "false"}))
    joined = await db.fetchrow(
        _call({**fields, "rate_key": "'partner-b'", "idempotency_key": "'rated-refresh:2'"})
    )

    assert (found["job_id"], found["created"], found["coalesced"]) == (made.job_id, False, False)
    assert (joined["job_id"], joined["coalesced"], joined["differs"]) == (
        made.job_id,
        True,
        ["rate_key"],
    )
