"""dl_enqueue(depends_on => ...) and dl_enqueue_workflow(): dependents and workflows made from
SQL in the caller's transaction, as the Python path makes them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import dependency_functions, workflow_function
from app.domain.spec import JobCreate
from app.jobs.enqueue import enqueue_in_session
from app.pipelines.registry import load_pipelines
from app.settings import Settings

load_pipelines()  # the built-in `noop`


def step(name: str, *parents: str, **job: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": name,
        "job": {"queue": "etl.default", "task": "noop", "lock_key": f"wf:{name}", **job},
    }
    if parents:
        found["depends_on"] = list(parents)
    return found


async def enqueue_workflow(db: asyncpg.Connection, steps: list[dict[str, Any]]) -> list[Any]:
    return await db.fetch(
        "SELECT * FROM dl_enqueue_workflow('nightly', $1::jsonb)", json.dumps(steps)
    )


async def refusal(db: asyncpg.Connection, steps: Any) -> asyncpg.PostgresError:
    with pytest.raises(asyncpg.PostgresError) as refused:
        async with db.transaction():
            await db.fetch(
                "SELECT * FROM dl_enqueue_workflow('nightly', $1::jsonb)", json.dumps(steps)
            )
    return refused.value


async def test_dl_enqueue_workflow_creates_a_diamond_roots_queued_the_rest_waiting(
    db: asyncpg.Connection,
) -> None:
    rows = await enqueue_workflow(
        db, [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]
    )

    assert [(r["step"], r["status"]) for r in rows] == [
        ("a", "queued"),
        ("b", "waiting"),
        ("c", "waiting"),
        ("d", "waiting"),
    ]
    assert len({r["workflow_id"] for r in rows}) == 1
    ids = {r["step"]: r["job_id"] for r in rows}
    jobs = {
        r["step_name"]: r
        for r in await db.fetch(
            "SELECT step_name, workflow_id, depends_on, has_dependents, pgq_job_id FROM dl_jobs"
        )
    }
    assert sorted(jobs["d"]["depends_on"]) == sorted([ids["b"], ids["c"]])
    assert [jobs[n]["has_dependents"] for n in "abcd"] == [True, True, True, False]
    assert [jobs[n]["pgq_job_id"] is None for n in "abcd"] == [False, True, True, True]
    assert await db.fetchval("SELECT count(*) FROM dl_job_dependencies") == 4
    assert await db.fetchval(
        "SELECT (name, step_count) = ('nightly', 4) FROM dl_workflows WHERE workflow_id = $1",
        rows[0]["workflow_id"],
    )


async def test_dl_enqueue_workflow_rolled_back_leaves_nothing(db: asyncpg.Connection) -> None:
    transaction = db.transaction()
    await transaction.start()
    await enqueue_workflow(db, [step("a"), step("b", "a")])
    await transaction.rollback()

    for table in ("dl_jobs", "dl_job_dependencies", "dl_workflows", "pgqueuer"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table


@pytest.mark.parametrize(
    ("steps", "column", "says"),
    [
        (
            [step("a", "c"), step("b", "a"), step("c", "b")],
            "steps",
            "cycle: b -> c -> a -> b (each waits for the one before it)",
        ),
        ([step("a", "a")], "steps", "cycle: a -> a"),
        ([step("a", "nope")], "steps[0].depends_on[0]", "no step is named 'nope'"),
        ([step("a"), step("a")], "steps[1].name", "'a' is taken by steps[0]"),
        ([step("a"), step("b", "a", "a")], "steps[1].depends_on[1]", "'a' is named twice"),
        (
            [step("a"), step("b", "a", queue="bad queue")],
            "steps[1].job.queue",
            "steps[1]: dl_enqueue: invalid queue",
        ),
        (
            [step("a", idempotency_key="k")],
            "steps[0].job.idempotency_key",
            "is not a field a step's job may set",
        ),
        ([{"name": "a"}], "steps[0].job", "must be a JSON object"),
        ([], "steps", "1 to 10000 steps"),
        (
            [step("a", str(uuid.UUID(int=7)))],
            "steps[0].depends_on",
            f"no job has the id {uuid.UUID(int=7)}",
        ),
    ],
)
async def test_dl_enqueue_workflow_refuses_a_bad_workflow_naming_the_field(
    db: asyncpg.Connection, steps: Any, column: str, says: str
) -> None:
    error = await refusal(db, steps)

    assert error.sqlstate == "22023", error
    assert error.column_name == column, error
    assert says in str(error), error


async def test_dl_enqueue_workflow_names_the_step_a_cast_failed_on(db: asyncpg.Connection) -> None:
    error = await refusal(db, [step("a"), step("b", "a", priority="high")])

    assert error.sqlstate == "22P02"
    assert (error.column_name, str(error).split(":")[:2]) == (
        "steps[1].job",
        ["dl_enqueue_workflow", " steps[1]"],
    )


async def test_dl_enqueue_with_depends_on_waits_and_shares_the_python_fingerprint(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    parent = await db.fetchval(
        "SELECT job_id FROM dl_enqueue(queue => 'etl.default', task => 'noop', lock_key => 'p')"
    )
    sql_child = await db.fetchrow(
        "SELECT job_id, status, created FROM dl_enqueue(queue => 'etl.default', task => 'noop',"
        " lock_key => 'c', idempotency_key => 'child', depends_on => ARRAY[$1::uuid])",
        parent,
    )
    assert (sql_child["status"], sql_child["created"]) == ("waiting", True)

    # The same request from Python finds that job; other parents are another request.
    same = JobCreate(
        queue="etl.default",
        task="noop",
        lock_key="c",
        idempotency_key="child",
        depends_on=[parent],
    )
    async with sessions() as session, session.begin():
        found = await enqueue_in_session(session, same, settings)
    assert (found.job_id, found.created) == (sql_child["job_id"], False)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetch(
            "SELECT * FROM dl_enqueue(queue => 'etl.default', task => 'noop', lock_key => 'c',"
            " idempotency_key => 'child', depends_on => ARRAY[$1::uuid], run_after => 'any')",
            parent,
        )


@pytest.mark.parametrize(
    ("arguments", "column"),
    [
        ("depends_on => ARRAY[NULL::uuid]", "depends_on"),
        ("depends_on => ARRAY[gen_random_uuid()]", "depends_on"),
        ("run_after => 'any'", "run_after"),
        ("run_after => 'later', depends_on => ARRAY[gen_random_uuid()]", "run_after"),
    ],
)
async def test_dl_enqueue_refuses_bad_dependencies_naming_the_field(
    db: asyncpg.Connection, arguments: str, column: str
) -> None:
    with pytest.raises(asyncpg.PostgresError) as refused:
        await db.fetch(
            "SELECT * FROM dl_enqueue(queue => 'etl.default', task => 'noop', lock_key => 'x',"
            f" {arguments})"
        )

    assert (refused.value.sqlstate, refused.value.column_name) == ("22023", column)


async def test_dl_enqueue_depends_on_a_coalescing_job_is_refused(db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.PostgresError) as refused:
        await db.fetch(
            "SELECT * FROM dl_enqueue(queue => 'etl.default', task => 'noop', lock_key => 'x',"
            " coalescing => true, depends_on => ARRAY[gen_random_uuid()])"
        )

    assert refused.value.column_name == "coalescing"


async def test_dependency_functions_installed_are_what_the_code_renders(
    db: asyncpg.Connection,
) -> None:
    """A change to the rendering (or to dispatch_ctes) needs a migration that reinstalls them."""
    statements = [
        *dependency_functions.install_statements("public"),
        *workflow_function.install_statements("public"),
    ]
    for statement in statements:
        if "CREATE OR REPLACE FUNCTION " not in statement:
            continue
        name = statement.split("FUNCTION ", 1)[1].split("(", 1)[0].split(".")[1]
        tag = statement.split("AS $", 1)[1].split("$", 1)[0]
        rendered = statement.split(f"${tag}$", 2)[1]
        installed = await db.fetchval("SELECT prosrc FROM pg_proc WHERE proname = $1", name)
        assert installed == rendered, f"{name} differs from what the code renders"
