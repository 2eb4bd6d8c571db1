"""Job results over real HTTP, with a real worker running pipelines of each shape.

The API loads the e2e pipelines (to accept their triggers); the worker runs them with
DL_RESULT_MAX_BYTES at its lowest, 4 KiB, so the limit is cheap to cross.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.api_servers import E2E_PIPELINES_API_ENV, ApiServer
from tests.support.job_streams import open_stream
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until
from tests.support.workers import WorkerFleet, worker_fleet

API_ENV = E2E_PIPELINES_API_ENV  # the API accepts the e2e pipelines (e2e/conftest.py)
QUEUE = "etl.results"
MAX_BYTES = 4096
FINAL = {"succeeded", "failed", "canceled", "lost"}
VALUE = {"rows": 42, "file": "rates.csv", "tags": ["a", "b"], "nested": {"ok": True}}


@pytest.fixture(scope="module")
def results_fleet(
    api_server: ApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerFleet]:
    with worker_fleet(
        PROJECT_ROOT,
        api_server.dsn,
        tmp_path_factory.mktemp("results_workers"),
        env={"DL_RESULT_MAX_BYTES": str(MAX_BYTES), "DL_HEARTBEAT_SEC": "0.3"},
    ) as fleet:
        fleet.start(queues={QUEUE: 4})
        yield fleet


@pytest.fixture
async def worker(results_fleet: WorkerFleet) -> WorkerFleet:
    """The module's worker, once it serves its queue."""
    await results_fleet.wait_ready(results_fleet.workers[0])
    return results_fleet


async def trigger(client: httpx.AsyncClient, task: str, args: dict[str, Any], **fields: Any) -> str:
    body = {"queue": QUEUE, "task": task, "lock_key": f"results-{uuid.uuid4()}", "args": args}
    response = await client.post("/api/v1/jobs/trigger", json={**body, **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


async def final(client: httpx.AsyncClient, job_id: str, worker: WorkerFleet) -> dict[str, Any]:
    """The job's status answer once it has ended."""

    async def ended() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/jobs/{job_id}/status")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job if job["status"] in FINAL else None

    job: dict[str, Any] = await wait_until(
        ended, timeout=30, what=f"job {job_id} to end", diagnostics=worker.diagnostics
    )
    return job


async def events(client: httpx.AsyncClient, job_id: str) -> list[str]:
    response = await client.get(f"/api/v1/jobs/{job_id}/events")
    assert response.status_code == 200, response.text
    return [event["event"] for event in response.json()["events"]]


def unique_tag() -> str:
    """A partition_key no other job has, to list one job."""
    return f"results-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize(
    ("task", "args"),
    [
        ("test.result.coroutine", {"sleep": 0.3}),
        ("test.result.function", {"sleep": 0.3}),
        ("test.result.generator", {"steps": 3, "sleep": 0.2}),
    ],
    ids=["coroutine", "function", "generator"],
)
async def test_job_result_of_each_shape_in_stream_status_and_listing(
    client: httpx.AsyncClient, worker: WorkerFleet, task: str, args: dict[str, Any]
) -> None:
    # Paused, the queue holds the job back until the stream is open: it sees it queued.
    assert (await client.post(f"/api/v1/queues/{QUEUE}/pause")).status_code == 200
    try:
        job_id = await trigger(client, task, {**args, "value": VALUE}, partition_key=unique_tag())
        async with open_stream(client, job_id) as stream:
            first = await stream.next_event()
            assert (await client.post(f"/api/v1/queues/{QUEUE}/resume")).status_code == 200
            views = await stream.read_to_end()
    finally:
        await client.post(f"/api/v1/queues/{QUEUE}/resume")
    status = await final(client, job_id, worker)

    assert first is not None
    assert (first["status"], first["result"]) == ("queued", None)
    assert views[-1]["status"] == "succeeded", views
    assert views[-1]["result"] == VALUE
    assert all(view["result"] is None for view in views[:-1]), views
    assert (status["status"], status["result"]) == ("succeeded", VALUE)
    tag = {"partition_key": status["partition_key"]}
    plain = (await client.get("/api/v1/jobs", params=tag)).json()["jobs"]
    asked = (await client.get("/api/v1/jobs", params={**tag, "include": "result"})).json()["jobs"]
    assert [job["job_id"] for job in plain] == [job_id]
    assert "result" not in plain[0]
    assert asked[0]["result"] == VALUE


async def test_job_result_up_to_the_limit_is_stored_and_one_byte_more_fails_at_once(
    client: httpx.AsyncClient, worker: WorkerFleet
) -> None:
    fits = await trigger(client, "test.result.chars", {"chars": MAX_BYTES - 2}, max_attempts=3)
    too_big = await trigger(client, "test.result.chars", {"chars": MAX_BYTES - 1}, max_attempts=3)

    stored = await final(client, fits, worker)
    failed = await final(client, too_big, worker)

    assert stored["status"] == "succeeded"
    assert stored["result"] == "x" * (MAX_BYTES - 2)
    assert (failed["status"], failed["attempt"], failed["result"]) == ("failed", 1, None)
    assert failed["error"] == (
        "ResultTooLargeError: the result is 4,097 bytes of JSON, more than "
        "DL_RESULT_MAX_BYTES (4,096 bytes) allows"
    )
    # Not retried: running it again would only return the same value.
    assert await events(client, too_big) == ["queued", "started", "failed"]


async def test_job_result_not_json_fails_naming_the_type(
    client: httpx.AsyncClient, worker: WorkerFleet
) -> None:
    unencodable = await trigger(client, "test.result.unencodable", {}, max_attempts=3)
    with_nul = await trigger(client, "test.result.unencodable", {"nul": True}, max_attempts=3)

    typed = await final(client, unencodable, worker)
    nul = await final(client, with_nul, worker)

    assert (typed["status"], typed["attempt"], typed["result"]) == ("failed", 1, None)
    assert typed["error"].startswith(
        "ResultNotJsonError: the result is not JSON-serialisable: it holds a value of type "
        "'tests.support.e2e_pipelines.Unencodable'"
    ), typed["error"]
    assert (nul["status"], nul["result"]) == ("failed", None)
    assert "NUL character" in nul["error"], nul["error"]
    assert await events(client, unencodable) == ["queued", "started", "failed"]


async def test_job_result_is_the_succeeding_attempts(
    client: httpx.AsyncClient, worker: WorkerFleet
) -> None:
    """Each attempt sets a result, then fails while its attempt is at most fail_attempts."""
    second = await trigger(client, "test.result.flaky", {"fail_attempts": 1}, max_attempts=2)
    never = await trigger(client, "test.result.flaky", {"fail_attempts": 9}, max_attempts=1)

    succeeded = await final(client, second, worker)
    failed = await final(client, never, worker)

    assert (succeeded["status"], succeeded["attempt"]) == ("succeeded", 2)
    assert succeeded["result"] == {"attempt": 2}
    assert (failed["status"], failed["result"]) == ("failed", None)

    retried = await client.post(f"/api/v1/jobs/{never}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["result"] is None


async def test_job_listing_include_unknown_field_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/jobs", params={"include": "result,secrets"})

    assert response.status_code == 400, response.text
    assert response.json()["detail"] == (
        "unknown field 'secrets' (query parameter `include`; valid: result)"
    )
