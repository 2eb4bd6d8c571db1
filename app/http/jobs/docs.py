"""OpenAPI text for /api/v1/jobs: descriptions, query parameters, response examples."""

from __future__ import annotations

from typing import Annotated, Any

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from app.domain.filters import LIST_LIMIT_MAX, MAX_ARGS_FILTER_TEXT, MAX_FILTER_TEXT
from app.http.errors import error_response
from app.http.jobs.schemas import Job, JobHistory, JobPage
from app.jobs.service import EVENT_ID_MAX, EVENTS_LIMIT_MAX

_JOB_ID = "0f9c4c2e-6f51-4a8e-9d0b-2b7f1f3c9a10"
_CURSOR = (
    "MjAyNi0xMS0yNFQxNTowMDowMC4wMTIzNDUrMDA6MDB8MGY5YzRjMmUtNmY1MS00YThlLTlkMGItMmI3ZjFmM2M5YTEw"
)

FAILED_JOB: dict[str, Any] = {
    "job_id": _JOB_ID,
    "status": "failed",
    "queue": "etl.default",
    "task": "load.cbr.rates",
    "args": {"date": "2026-11-24"},
    "lock_key": "cbr_rates",
    "concurrency_key": None,
    "concurrency_limit": None,
    "rate_key": None,
    "coalescing": False,
    "idempotency_key": "cbr_2026-11-24",
    "partition_key": "2026-11-24",
    "priority": 100,
    "available_at": "2026-11-24T15:00:31.500000Z",
    "waiting_for": None,
    "attempt": 3,
    "max_attempts": 3,
    "lease_ttl_sec": 60,
    "lease_expires_at": None,
    "heartbeat_at": "2026-11-24T15:01:02.120000Z",
    "cancel_requested": False,
    "progress": {"processed": 10, "total": 40},
    "error": "ConnectionError: cbr.ru did not answer",
    "producer": "api-client",
    "consumer_group": "cbr-loaders",
    "worker_id": "etl-1",
    "created_at": "2026-11-24T15:00:00.012345Z",
    "started_at": "2026-11-24T15:00:00.020000Z",
    "finished_at": "2026-11-24T15:01:02.500000Z",
    "depends_on": None,
    "run_after": "succeeded",
    "canceled_by": None,
    "workflow_id": None,
    "step_name": None,
    "result": None,
}

RETRIED_JOB: dict[str, Any] = {
    **FAILED_JOB,
    "status": "queued",
    "available_at": "2026-11-24T16:00:00.000000Z",
    "max_attempts": 6,
    "heartbeat_at": None,
    "progress": None,
    "error": None,
    "finished_at": None,
}

TRIGGER_DESCRIPTION = (
    "Answers once the job is committed. With `coalescing: true`, a job of a coalescing trigger"
    " already queued for the same queue, task and lock_key is joined instead: the answer says"
    " `coalesced: true`, with `differs`, the fields that job keeps with other values than the"
    " request's, and the job's history gets a `coalesced` event. See docs/flow-control.md."
    " With `depends_on` (job ids), the job is created `waiting` and runs once every parent"
    " succeeded (`run_after: any`: ended), or ends `canceled` naming the parent that failed;"
    " an unknown parent is a 400. See docs/workflows.md."
)

JOB_RESPONSES = {
    200: ResponseSpec(
        data_container=Job,
        description="The job as stored now",
        examples=[Example(summary="A failed job", value=FAILED_JOB)],
    )
}

LIST_RESPONSES = {
    200: ResponseSpec(
        data_container=JobPage,
        description="One page, newest first; `next_cursor` is null on the last page",
        examples=[
            Example(
                summary="A page with more to come",
                value={
                    # A listing leaves `result` out unless `include=result` asks for it.
                    "jobs": [{k: v for k, v in FAILED_JOB.items() if k != "result"}],
                    "next_cursor": _CURSOR,
                },
            )
        ],
    )
}

EVENTS_RESPONSES = {
    200: ResponseSpec(
        data_container=JobHistory,
        description="The job's events, oldest first",
        examples=[
            Example(
                summary="A job that failed once, then succeeded",
                value={
                    "job_id": _JOB_ID,
                    "events": [
                        {
                            "id": 101,
                            "event": "queued",
                            "attempt": 0,
                            "at": "2026-11-24T15:00:00.012345Z",
                            "details": {"queue": "etl.default", "task": "load.cbr.rates"},
                        },
                        {
                            "id": 102,
                            "event": "started",
                            "attempt": 1,
                            "at": "2026-11-24T15:00:00.020000Z",
                            "details": {"worker_id": "etl-1"},
                        },
                        {
                            "id": 103,
                            "event": "retry_scheduled",
                            "attempt": 1,
                            "at": "2026-11-24T15:00:01.500000Z",
                            "details": {"worker_id": "etl-1", "retry_in_sec": 30.0},
                        },
                        {
                            "id": 104,
                            "event": "started",
                            "attempt": 2,
                            "at": "2026-11-24T15:00:31.600000Z",
                            "details": {"worker_id": "etl-2"},
                        },
                        {
                            "id": 105,
                            "event": "succeeded",
                            "attempt": 2,
                            "at": "2026-11-24T15:00:40.000000Z",
                            "details": {"worker_id": "etl-2"},
                        },
                    ],
                    "next_after": None,
                },
            )
        ],
    )
}

RETRY_RESPONSES = {
    200: ResponseSpec(
        data_container=Job,
        description="The job, queued again",
        examples=[Example(summary="A failed job retried", value=RETRIED_JOB)],
    )
}


NOT_FOUND = error_response(404, "No job has this id", f"job {_JOB_ID} not found")
TOO_MANY_STREAMS = error_response(
    429,
    "Too many job streams open on this server or for this token; see Retry-After",
    "token 'dashboard' has too many job streams open (at most 20)",
)
BAD_JOB_ID = error_response(
    400, "The id is not a UUID, or a parameter is invalid", "job_id 'abc' is not a UUID"
)
BAD_LIST_QUERY = error_response(
    400,
    "A query parameter is invalid",
    "unknown status 'done' (query parameter `status`; valid: queued, running, succeeded, "
    "failed, canceled, lost)",
)
JOB_FINISHED = error_response(
    409,
    "The job has already finished",
    "job already finished with status 'succeeded'",
    job_status="succeeded",
)
KEY_CONFLICT = error_response(
    409,
    "The idempotency_key is already used by a job created from a different request",
    f"idempotency_key 'cbr_2026-11-24' is already used by job {_JOB_ID}, created from a "
    "different request; send the same request to get that job, or use another key",
    job_id=_JOB_ID,
)
BULK_KEY_CONFLICT = error_response(
    409,
    "An item's idempotency_key is already used by a job (or an earlier item) created from a "
    "different request; nothing was written",
    f"jobs[3]: idempotency_key 'cbr_2026-11-24' is already used by jobs[1] (job {_JOB_ID}), "
    "created from a different request; send the same request to get that job, or use "
    "another key",
    job_id=_JOB_ID,
)
NOT_RETRYABLE = error_response(
    409,
    "The job is queued, running or succeeded",
    "job has status 'running'; only failed, lost or canceled jobs can be retried",
    job_status="running",
)


LIST_DESCRIPTION = """\
Jobs matching every filter given, ordered by `created_at` then `job_id`, newest first.

Keyset pages: pass `next_cursor` as `cursor` (with the same filters) for the next page; it is
null on the last page. A page costs the same however deep it is, and jobs created meanwhile
never shift the pages (they appear on the first). Ranges are half-open
(`created_after` <= created_at < `created_before`, likewise for finished_at); a job that has
not finished matches no finished range; an empty range gives an empty page. An empty value
means no filter; unknown parameters are ignored; a bad value is a 400 naming the parameter.
Each job's `result` is left out unless `include=result` asks for it (results may be large).
"""

EVENTS_DESCRIPTION = """\
Every lifecycle event of the job (`queued`, `started`, `lock_busy`, `concurrency_busy`,
`retry_scheduled`,
`failed`, `retried`, ...) with its attempt, time and details, oldest first. `next_after` is
set when more events follow: pass it as `after` for the next page.
"""

RETRY_DESCRIPTION = """\
The job goes back to `queued` with a fresh dispatch (in one transaction, with a `retried`
event) and runs again on a worker. Only failed, lost or canceled jobs: a queued, running or
succeeded job is a 409 with `job_status`; of two concurrent retries one wins, the other gets
that 409.

`attempt` is kept: attempt numbers are never reused, so a stale runner of an old attempt can
never write over the new one. `max_attempts` becomes `attempt` + the job's original
`max_attempts` (the one it had before its first retry), so the job gets its whole budget
again: a job created with `max_attempts` 3 that failed on attempt 3 is retried with
`max_attempts` 6 and runs attempts 4 to 6. `error`, `progress`, `result`, `finished_at`, the
lease and `cancel_requested` are cleared and `available_at` is now; the `retried` event's
details hold `previous_status`, `max_attempts_before` and `max_attempts`.
"""


def _text_filter(description: str, example: str) -> Any:
    """A query parameter matched exactly against a stored column."""
    return Parameter(
        description=f"{description} (exact match; empty means no filter)",
        max_length=MAX_FILTER_TEXT,
        examples=[Example(value=example)],
    )


def _time_filter(description: str, example: str) -> Any:
    """A query parameter holding a timestamp."""
    return Parameter(
        description=f"{description}; RFC 3339, a timestamp without a zone is read as UTC",
        max_length=64,
        examples=[Example(value=example)],
    )


StatusQuery = Annotated[
    str | None,
    Parameter(
        description="Comma-separated statuses: queued, running, succeeded, failed, canceled, "
        "lost; a job matches any of them",
        max_length=200,
        examples=[Example(value="failed,lost")],
    ),
]
QueueQuery = Annotated[str | None, _text_filter("Queue", "etl.default")]
TaskQuery = Annotated[str | None, _text_filter("Task (pipeline name)", "load.cbr.rates")]
LockKeyQuery = Annotated[str | None, _text_filter("lock_key", "customer:42")]
PartitionKeyQuery = Annotated[str | None, _text_filter("partition_key", "2026-11-24")]
ProducerQuery = Annotated[str | None, _text_filter("producer", "dl:schedule:nightly-customers")]
ConsumerGroupQuery = Annotated[str | None, _text_filter("consumer_group", "cbr-loaders")]
CreatedAfterQuery = Annotated[
    str | None, _time_filter("Jobs created at or after this time", "2026-11-24T00:00:00Z")
]
CreatedBeforeQuery = Annotated[
    str | None, _time_filter("Jobs created before this time", "2026-11-25T00:00:00+01:00")
]
FinishedAfterQuery = Annotated[
    str | None, _time_filter("Jobs finished at or after this time", "2026-11-24T12:00:00Z")
]
FinishedBeforeQuery = Annotated[
    str | None, _time_filter("Jobs finished before this time", "2026-11-24T13:00:00")
]
ArgsQuery = Annotated[
    str | None,
    Parameter(
        description="Jobs whose args contain this JSON object (PostgreSQL `args @> value`): "
        f'`{{"account": 7}}` matches args holding `account: 7`. At most {MAX_ARGS_FILTER_TEXT} '
        "characters; anything but a JSON object is a 400",
        examples=[Example(value='{"account": 7}')],
    ),
]
LimitQuery = Annotated[
    int,
    Parameter(description="Jobs per page", ge=1, le=LIST_LIMIT_MAX, examples=[Example(value=50)]),
]
IncludeQuery = Annotated[
    str | None,
    Parameter(
        description="Fields to add to each job, comma-separated: `result` (what the pipeline "
        "returned; left out by default, as results may be large). Anything else is a 400",
        max_length=200,
        examples=[Example(value="result")],
    ),
]
CursorQuery = Annotated[
    str | None,
    Parameter(
        description="`next_cursor` of the previous page, unchanged (opaque)",
        max_length=200,
        examples=[Example(value=_CURSOR)],
    ),
]
EventsAfterQuery = Annotated[
    int | None,
    Parameter(
        description="Only events with a greater id (`next_after` of the previous page)",
        ge=0,
        le=EVENT_ID_MAX,
        examples=[Example(value=104)],
    ),
]
EventsLimitQuery = Annotated[
    int,
    Parameter(
        description="Events per page", ge=1, le=EVENTS_LIMIT_MAX, examples=[Example(value=100)]
    ),
]


COUNTS_DESCRIPTION = """\
How many jobs matching the filters (the listing's, without `limit` and `cursor`) are in each
state. Queued jobs are split three ways: `due` (first attempt, available now), `scheduled`
(first attempt, `available_at` in the future) and `retrying` (queued again after an attempt).
`next_due_at` is the earliest future `available_at` among them. One pass over the matching
rows: give a filter to count a slice of a large table.
"""

BULK_ACTION_DESCRIPTION = """\
Takes `{"job_ids": [...]}`, 1 to 500 distinct ids. Each job is handled on its own, in its own
transaction, exactly as the single-job endpoint would: one job's conflict leaves the others
done. The answer lists one result per id, in request order: `outcome` is `DONE`,
`not_found` or `conflict` (with the job's `status` and a `detail`). An empty, too long or
repeating list, or an id that is not a UUID, is a 400 and changes nothing.
"""

BAD_ID_LIST = error_response(
    400,
    "The id list is empty, too long, repeats an id or holds a non-UUID",
    "job_ids[2] repeats job_ids[0] (0f9c4c2e-6f51-4a8e-9d0b-2b7f1f3c9a10)",
)


def bulk_action_description(done: str) -> str:
    """The bulk endpoint's description, naming the outcome of a job it acted on."""
    return BULK_ACTION_DESCRIPTION.replace("DONE", done)
