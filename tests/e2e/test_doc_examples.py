"""Every runnable example of README.md and docs/*.md, run against a real API and worker.

The examples are found by their `<!-- example: NAME -->` marker (tests/support/doc_examples.py)
and run as written: bash blocks with `bash -eo pipefail`, python blocks with this interpreter.
The only changes are where they point: `http://127.0.0.1:8081` becomes the test's API,
`.venv/bin/` this interpreter's scripts, and the environment carries `DATALOADER_URL` (the
command line's documented way to name the API) and, for python, `DATABASE_URL`. Each example
has a check below that asserts what the text around it says it does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.settings import Settings
from tests.support.api_servers import ApiServer, api_server_on_fresh_database
from tests.support.databases import TestServer as PgServer
from tests.support.doc_examples import (
    PROJECT_ROOT,
    DocBlock,
    runnable_code,
    runnable_examples,
)
from tests.support.workers import WorkerFleet, wait_until, worker_fleet

RUN_TIMEOUT_SEC = 90.0
QUEUE = "etl.default"  # the queue every example uses, served by the module's worker


@dataclass
class Service:
    """The module's API and worker, on one fresh database."""

    api: ApiServer
    fleet: WorkerFleet
    workdir: Path


@dataclass
class Ran:
    """How an example ended and what it printed."""

    block: DocBlock
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"example {self.block.example} ({self.block.where}) -> {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def json_objects(self) -> list[dict[str, Any]]:
        """Every JSON object printed, in order (curl answers carry no newline; SSE has `data:`)."""
        decoder = json.JSONDecoder()
        found: list[dict[str, Any]] = []
        index = self.stdout.find("{")
        while index != -1:
            value, end = decoder.raw_decode(self.stdout, index)
            found.append(value)
            index = self.stdout.find("{", end)
        return found


@pytest.fixture(scope="module")
async def service(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    """The API and one `pgq run` worker serving etl.default, as `make run` starts them."""
    log_dir = tmp_path_factory.mktemp("doc_examples")
    async with api_server_on_fresh_database(
        pg_server, template_db, log_dir, prefix="dl_docs"
    ) as api:
        with worker_fleet(PROJECT_ROOT, api.dsn, log_dir / "workers") as fleet:
            await fleet.start_ready("docs-w1", queues={QUEUE: 2})
            workdir = log_dir / "cwd"  # not the repository: no .env, nothing relative
            workdir.mkdir()
            yield Service(api=api, fleet=fleet, workdir=workdir)


@pytest.fixture
async def api(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the module's API, to set things up and check results."""
    async with httpx.AsyncClient(base_url=service.api.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def db(service: Service) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the module's database."""
    connection = await asyncpg.connect(service.api.dsn)
    yield connection
    await connection.close()


def _example_env(service: Service) -> dict[str, str]:
    """The caller's environment without service or client settings, aimed at the service."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in Settings.model_fields and not key.startswith("DATALOADER_")
    }
    env.update(
        {
            "DATALOADER_URL": service.api.base_url,
            "DATABASE_URL": service.api.dsn,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


async def run_example(block: DocBlock, service: Service) -> Ran:
    """Run one example to its end (killed after RUN_TIMEOUT_SEC)."""
    code = runnable_code(block, service.api.base_url)
    argv = (
        ["bash", "-eo", "pipefail", "-c", code]
        if block.language == "bash"
        else [sys.executable, "-c", code]
    )
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=service.workdir,
        env=_example_env(service),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # so a timeout can stop the whole pipeline
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_SEC)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(block, process.returncode, stdout.decode(), stderr.decode())


@dataclass
class Example:
    """What a check gets: the block, a way to run it, and the service to look at."""

    block: DocBlock
    service: Service
    api: httpx.AsyncClient
    db: asyncpg.Connection

    async def run(self) -> Ran:
        """Run the example; it must exit 0."""
        ran = await run_example(self.block, self.service)
        assert ran.returncode == 0, str(ran)
        return ran

    async def job(self, job_id: str) -> dict[str, Any]:
        """The job as the API shows it."""
        response = await self.api.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def wait_status(self, job_id: str, *statuses: str) -> dict[str, Any]:
        """Poll the job until it has one of `statuses`."""

        async def reached() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["status"] in statuses else None

        return await wait_until(
            reached,
            timeout=30,
            what=f"job {job_id} to be {'/'.join(statuses)}",
            diagnostics=self.service.fleet.diagnostics,
        )

    async def failed_job(self) -> str:
        """A job that failed on its first and only attempt (a retry would succeed)."""
        response = await self.api.post(
            "/api/v1/jobs/trigger",
            json={
                "queue": QUEUE,
                "task": "noop",
                "lock_key": f"docs:{uuid.uuid4().hex[:12]}",
                "max_attempts": 1,
                "args": {"steps": 1, "fail_at_step": 0, "fail_attempts": 1},
            },
        )
        assert response.status_code == 200, response.text
        job_id = str(response.json()["job_id"])
        await self.wait_status(job_id, "failed")
        return job_id

    async def newest_job(self, lock_key: str) -> dict[str, Any]:
        """The newest job with this lock_key."""
        response = await self.api.get("/api/v1/jobs", params={"lock_key": lock_key, "limit": 1})
        assert response.status_code == 200, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        assert jobs, f"no job with lock_key {lock_key}"
        return jobs[0]


Check = Callable[[Example], Awaitable[None]]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    """Register the check of the example called `name`."""

    def register(func: Check) -> Check:
        CHECKS[name] = func
        return func

    return register


@check("first-job")
async def _first_job(example: Example) -> None:
    """Triggered, seen queued or running, canceled; the stream ends with `canceled`."""
    ran = await example.run()
    status, cancel, *stream = ran.json_objects()

    assert status["status"] in ("queued", "running"), str(ran)
    assert cancel["job_id"] == status["job_id"], str(ran)
    assert cancel["status"] == "canceled" or cancel["cancel_requested"] is True, str(ran)
    assert stream, str(ran)
    assert stream[-1]["status"] == "canceled", str(ran)
    assert ran.stdout.count("event: job") == len(stream), str(ran)
    assert (await example.job(status["job_id"]))["status"] == "canceled"


@check("first-job-cli")
async def _first_job_cli(example: Example) -> None:
    """`trigger --wait` follows the job to `succeeded` and exits 0; `list` runs."""
    ran = await example.run()

    done = re.search(r"job (\S+) succeeded in [\d.]+ s \(attempt 1/5\)", ran.stdout)
    assert done, str(ran)
    job = await example.job(done.group(1))
    assert job["status"] == "succeeded"
    assert job["progress"] == {"processed": 5, "total": 5}
    assert job["lock_key"] == "customer:42"


@check("job-result")
async def _job_result(example: Example) -> None:
    """`--wait` prints the result after the outcome; the listing with include=result has it."""
    ran = await example.run()

    done = re.search(
        r"job (\S+) succeeded in [\d.]+ s \(attempt 1/5\)\nresult (\{.*\})\n", ran.stdout
    )
    assert done, str(ran)
    assert json.loads(done.group(2)) == {"rows": 42, "file": "rates.csv"}
    (page,) = [found for found in ran.json_objects() if "jobs" in found]
    assert page["jobs"][0]["job_id"] == done.group(1), str(ran)
    assert page["jobs"][0]["result"] == {"rows": 42, "file": "rates.csv"}, str(ran)
    job = await example.job(done.group(1))
    assert (job["status"], job["result"]) == ("succeeded", {"rows": 42, "file": "rates.csv"})


@check("list-jobs")
async def _list_jobs(example: Example) -> None:
    """Failed and lost jobs of etl.default, newest first, one page with `next_cursor`."""
    failed = await example.failed_job()
    ran = await example.run()
    (page,) = ran.json_objects()

    assert set(page) == {"jobs", "next_cursor"}, str(ran)
    assert failed in [job["job_id"] for job in page["jobs"]], str(ran)
    assert all(job["status"] in ("failed", "lost") for job in page["jobs"]), str(ran)
    assert all(job["queue"] == QUEUE for job in page["jobs"]), str(ran)
    assert len(page["jobs"]) <= 20


@check("job-counts")
async def _job_counts(example: Example) -> None:
    """Every state of etl.default counted; a failed job among them."""
    await example.failed_job()
    ran = await example.run()
    (counts,) = ran.json_objects()

    states = {"due", "scheduled", "retrying", "running", "succeeded", "failed", "canceled", "lost"}
    states.add("waiting")
    assert set(counts) == states | {"next_due_at"}, str(ran)
    assert counts["failed"] >= 1, str(ran)


@check("rate-limits")
async def _rate_limits(example: Example) -> None:
    """The limits as set, read back the same."""
    ran = await example.run()
    stored, read = ran.json_objects()

    expected = {
        "start": {"count": 20, "period_sec": 1.0},
        "per_rate_key": {"count": 5, "period_sec": 1.0},
    }
    assert stored == read == expected, str(ran)


@check("fair-queue")
async def _fair_queue(example: Example) -> None:
    """The queue made fair; its view says so."""
    ran = await example.run()
    stored, view = ran.json_objects()

    assert stored == {"by": "partition_key"}, str(ran)
    assert (view["queue"], view["fairness"]) == ("etl.tenants", {"by": "partition_key"}), str(ran)


@check("batch-callback")
async def _batch_callback(example: Example) -> None:
    """The batch completes after its three jobs; the callback's args carry the counts."""
    ran = await example.run()
    batch, args = ran.json_objects()

    assert (batch["total"], batch["pending"]) == (3, 0), str(ran)
    assert batch["counts"] == {"succeeded": 3, "failed": 0, "canceled": 0, "lost": 0}
    assert args == {
        "day": 1,
        "batch": {
            "batch_id": batch["batch_id"],
            "total": 3,
            "succeeded": 3,
            "failed": 0,
            "canceled": 0,
            "lost": 0,
        },
    }, str(ran)
    await example.wait_status(batch["callback_job_id"], "succeeded")


@check("retry")
async def _retry(example: Example) -> None:
    """Failed on attempt 1 of 1, retried with a budget of 2, succeeded on attempt 2."""
    ran = await example.run()
    failed, retried, succeeded, history = ran.json_objects()

    assert (failed["status"], failed["attempt"], failed["max_attempts"]) == ("failed", 1, 1)
    assert (retried["status"], retried["attempt"], retried["max_attempts"]) == ("queued", 1, 2)
    assert (succeeded["status"], succeeded["attempt"]) == ("succeeded", 2)
    assert [event["event"] for event in history["events"]] == [
        "queued",
        "started",
        "failed",
        "retried",
        "started",
        "succeeded",
    ], str(ran)


@check("queues")
async def _queues(example: Example) -> None:
    """The list names etl.default; pause answers paused, resume answers active."""
    ran = await example.run()
    listing, paused, resumed = ran.json_objects()

    assert QUEUE in [queue["queue"] for queue in listing["queues"]], str(ran)
    assert (paused["queue"], paused["paused"]) == (QUEUE, True)
    assert paused["paused_at"] is not None
    assert (resumed["queue"], resumed["paused"], resumed["paused_at"]) == (QUEUE, False, None)
    assert len(listing["queues"][0]["throughput"]) == 60


@check("workers")
async def _workers(example: Example) -> None:
    """The module's worker is listed with its queue; noop is among the tasks it serves there."""
    ran = await example.run()
    workers, tasks = ran.json_objects()

    listed = {worker["worker_id"]: worker for worker in workers["workers"]}
    assert listed["docs-w1"]["queues"] == [{"queue": QUEUE, "concurrency": 2}], str(ran)
    noop = {task["task"]: task for task in tasks["tasks"]}["noop"]
    assert (noop["workers"], noop["queues"], noop["args_schema"]) == (1, [QUEUE], None), str(ran)


@check("enqueue-in-session")
async def _enqueue_in_session(example: Example) -> None:
    """The order and the job commit together; run again, the key finds the same job."""
    await example.db.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL);"
        "INSERT INTO orders VALUES (42, 'new')"
    )
    try:
        first = await example.run()
        job_id, created = first.stdout.split()
        assert created == "True", str(first)
        assert await example.db.fetchval("SELECT status FROM orders WHERE id = 42") == "approved"
        job = await example.wait_status(job_id, "succeeded")  # a worker was woken
        assert job["lock_key"] == "order:42"
        assert job["idempotency_key"] == "approve:42"

        again = await example.run()
        assert again.stdout.split() == [job_id, "False"], str(again)
    finally:
        await example.db.execute("DROP TABLE orders")


@check("trace-in-session")
async def _trace_in_session(example: Example) -> None:
    """The job stores the caller's span as its traceparent, and runs as any other."""
    ran = await example.run()
    job_id, trace_id, span_id = ran.stdout.split()

    traceparent = await example.db.fetchval(
        "SELECT traceparent FROM dl_jobs WHERE job_id = $1", uuid.UUID(job_id)
    )
    assert traceparent is not None, str(ran)
    assert traceparent.split("-")[1:3] == [trace_id, span_id], str(ran)
    await example.wait_status(job_id, "succeeded")


@check("dl-enqueue-psql")
async def _dl_enqueue_psql(example: Example) -> None:
    """Prints the new job's id, `queued` and `t`; a worker runs it after the COMMIT."""
    await example.db.execute("DELETE FROM dl_jobs WHERE idempotency_key = 'invoice:7'")
    ran = await example.run()

    row = re.search(r"^\s*([0-9a-f-]{36})\s*\|\s*queued\s*\|\s*t\s*$", ran.stdout, re.M)
    assert row, str(ran)
    job = await example.wait_status(row.group(1), "succeeded")
    assert (job["lock_key"], job["idempotency_key"], job["task"]) == (
        "invoice:7",
        "invoice:7",
        "noop",
    )
    assert [
        e["event"]
        for e in (await example.api.get(f"/api/v1/jobs/{row.group(1)}/events")).json()["events"]
    ] == ["queued", "started", "succeeded"]


@check("dl-enqueue-asyncpg")
async def _dl_enqueue_asyncpg(example: Example) -> None:
    """Prints the job's id and `True`; the job runs."""
    ran = await example.run()

    job_id, created = ran.stdout.split()
    assert created == "True", str(ran)
    job = await example.wait_status(job_id, "succeeded")
    assert job["lock_key"] == "report:9"
    assert job["priority"] == 100
    assert job["max_attempts"] == 5


@check("coalescing-refresh")
async def _coalescing_refresh(example: Example) -> None:
    """The second trigger joins the first one's queued job; its history shows the join."""
    ran = await example.run()
    first, second, history = ran.json_objects()

    assert (first["status"], first["created"], first["coalesced"]) == ("queued", True, False)
    assert second == {
        "job_id": first["job_id"],
        "status": "queued",
        "created": False,
        "coalesced": True,
        "differs": [],
    }, str(ran)
    assert [e["event"] for e in history["events"]] == ["queued", "coalesced"], str(ran)
    job = await example.job(first["job_id"])
    assert (job["lock_key"], job["coalescing"], job["status"]) == ("table:sales", True, "queued")
    await example.api.post(f"/api/v1/jobs/{first['job_id']}/cancel")  # not left to run later


@check("workflow-diamond")
async def _workflow_diamond(example: Example) -> None:
    """Created, followed to its end (exit 0), every step succeeded; publish ran after eur and
    usd and got their results."""
    ran = await example.run()

    created = re.search(r"workflow (\S+) \(nightly-rates\) created: 4 steps", ran.stdout)
    assert created, str(ran)
    assert "succeeded (4 succeeded)" in ran.stdout, str(ran)
    view = (await example.api.get(f"/api/v1/workflows/{created.group(1)}")).json()
    steps = {step["name"]: step for step in view["steps"]}
    assert sorted(steps["publish"]["depends_on"]) == ["eur", "usd"]
    assert steps["publish"]["started_at"] > max(
        steps["eur"]["finished_at"], steps["usd"]["finished_at"]
    )
    publish = await example.job(steps["publish"]["job_id"])
    assert publish["result"] == {
        "parents": {"eur": "EUR ok", "usd": "USD ok"},
        "result": None,
    }


@check("workflow-idempotency")
async def _workflow_idempotency(example: Example) -> None:
    """Sent twice with one key: created, then found; one workflow, two steps."""
    ran = await example.run()

    created = re.search(r"workflow (\S+) \(month-end\) created: 2 steps", ran.stdout)
    assert created, str(ran)
    found = f"workflow {created.group(1)} (month-end) found (created before with this key): 2"
    assert found in ran.stdout, str(ran)
    view = (await example.api.get(f"/api/v1/workflows/{created.group(1)}")).json()
    assert [step["name"] for step in view["steps"]] == ["close", "report"]


@check("workflow-parent-results")
async def _workflow_parent_results(example: Example) -> None:
    """b's result holds a's, by step name."""
    ran = await example.run()

    job = ran.json_objects()[-1]
    assert job["step_name"] == "b", str(ran)
    assert job["result"] == {"parents": {"a": {"rows": 3}}, "result": None}, str(ran)


@check("workflow-in-session")
async def _workflow_in_session(example: Example) -> None:
    """The workflow's id and its steps' statuses; the steps then run in order."""
    ran = await example.run()

    workflow_id, statuses = ran.stdout.split(" ", 1)
    assert statuses.strip() == "['queued', 'waiting', 'waiting']", str(ran)

    async def done() -> dict[str, Any] | None:
        view = (await example.api.get(f"/api/v1/workflows/{workflow_id}")).json()
        return view if view["status"] != "active" else None

    view = await wait_until(done, timeout=30, what="the workflow to end")
    assert view["status"] == "succeeded"
    assert [step["name"] for step in sorted(view["steps"], key=lambda s: s["started_at"])] == [
        "fetch",
        "parse",
        "load",
    ]


@check("workflow-psql")
async def _workflow_psql(example: Example) -> None:
    """a queued and b, c, d waiting after the COMMIT; a worker runs all four."""
    ran = await example.run()

    rows = re.findall(r"^\s*(\w)\s*\|\s*(\w+)\s*$", ran.stdout, re.M)
    assert rows == [("a", "queued"), ("b", "waiting"), ("c", "waiting"), ("d", "waiting")], str(ran)
    workflow_id = await example.db.fetchval(
        "SELECT workflow_id FROM dl_workflows WHERE name = 'sql-diamond'"
    )

    async def done() -> bool:
        view = (await example.api.get(f"/api/v1/workflows/{workflow_id}")).json()
        return bool(view["status"] == "succeeded")

    await wait_until(done, timeout=30, what="the SQL workflow to succeed")


@check("cli-admin")
async def _cli_admin(example: Example) -> None:
    """Queues shown, paused and resumed; the JSON list is the API's answer."""
    ran = await example.run()

    assert f"queue {QUEUE} is paused" in ran.stdout, str(ran)
    assert f"queue {QUEUE} is active" in ran.stdout, str(ran)
    page = ran.json_objects()[-1]
    assert set(page) == {"jobs", "next_cursor"}, str(ran)
    assert 1 <= len(page["jobs"]) <= 5
    queue = (await example.api.get(f"/api/v1/queues/{QUEUE}")).json()
    assert queue["paused"] is False


@check("cli-limits")
async def _cli_limits(example: Example) -> None:
    """Both limits set, one changed with the other kept, shown, then cleared."""
    ran = await example.run()

    assert re.search(r"start\s+20/1s .*\n.*per rate_key\s+5/1s ", ran.stdout), str(ran)
    assert re.search(r"start\s+20/1s .*\n.*per rate_key\s+2/1s ", ran.stdout), str(ran)
    assert re.search(r"start\s+none\s*\n.*per rate_key\s+none", ran.stdout), str(ran)
    limits = (await example.api.get(f"/api/v1/queues/{QUEUE}/limits")).json()
    assert limits == {"start": None, "per_rate_key": None}


@check("cli-retry-failed")
async def _cli_retry_failed(example: Example) -> None:
    """Every failed or lost job is queued again."""
    failed = [await example.failed_job(), await example.failed_job()]
    await example.run()

    for job_id in failed:
        await example.wait_status(job_id, "succeeded")
        events = (await example.api.get(f"/api/v1/jobs/{job_id}/events")).json()["events"]
        assert "retried" in [event["event"] for event in events]
    left = (await example.api.get("/api/v1/jobs", params={"status": "failed,lost"})).json()
    assert left["jobs"] == []


@check("schedules")
async def _schedules(example: Example) -> None:
    """Created with five upcoming fire times, shown, and run now: its job exists."""
    ran = await example.run()
    created, shown, run_now = ran.json_objects()

    assert created["name"] == "cbr-rates", str(ran)
    assert (created["cron"], created["timezone"]) == ("*/5 * * * MON-FRI", "Europe/Berlin")
    assert created["enabled"] is True
    assert len(created["upcoming"]) == 5
    assert shown["schedule_id"] == created["schedule_id"]
    assert run_now["job"]["created"] is True
    assert run_now["schedule"]["last_job_id"] == run_now["job"]["job_id"]
    job = await example.job(run_now["job"]["job_id"])
    assert (job["task"], job["lock_key"], job["producer"]) == (
        "noop",
        "cbr_rates",
        "dl:schedule:cbr-rates",
    )


def test_doc_examples_each_have_a_check() -> None:
    names = [block.example for block in runnable_examples()]

    assert sorted(CHECKS) == sorted(name for name in names if name)


@pytest.mark.parametrize("block", runnable_examples(), ids=lambda block: block.example)
async def test_doc_example(
    block: DocBlock, service: Service, api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    assert block.example is not None
    if block.example not in CHECKS:
        pytest.fail(f"{block.where}: example {block.example!r} has no check in {__name__}")
    await CHECKS[block.example](Example(block=block, service=service, api=api, db=db))
