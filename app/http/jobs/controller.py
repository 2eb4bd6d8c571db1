"""/api/v1/jobs: trigger, list, look at, cancel and retry jobs."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from app.domain.filters import LIST_LIMIT_DEFAULT, JobFilter, parse_include
from app.http.auth import requires
from app.http.dependencies import from_state
from app.http.jobs.docs import (
    BAD_ID_LIST,
    BAD_JOB_ID,
    BAD_LIST_QUERY,
    BULK_KEY_CONFLICT,
    COUNTS_DESCRIPTION,
    EVENTS_DESCRIPTION,
    EVENTS_RESPONSES,
    JOB_FINISHED,
    JOB_RESPONSES,
    KEY_CONFLICT,
    LIST_DESCRIPTION,
    LIST_RESPONSES,
    NOT_FOUND,
    NOT_RETRYABLE,
    RETRY_DESCRIPTION,
    RETRY_RESPONSES,
    TRIGGER_DESCRIPTION,
    ArgsQuery,
    ConsumerGroupQuery,
    CreatedAfterQuery,
    CreatedBeforeQuery,
    CursorQuery,
    EventsAfterQuery,
    EventsLimitQuery,
    FinishedAfterQuery,
    FinishedBeforeQuery,
    IncludeQuery,
    LimitQuery,
    LockKeyQuery,
    PartitionKeyQuery,
    ProducerQuery,
    QueueQuery,
    StatusQuery,
    TaskQuery,
    bulk_action_description,
)
from app.http.jobs.schemas import (
    Job,
    JobActionResults,
    JobBulkCreate,
    JobBulkCreated,
    JobCounts,
    JobCreate,
    JobCreated,
    JobHistory,
    JobIdList,
    JobPage,
)
from app.http.json_body import NOT_JSON, require_booleans, require_json
from app.http.request_id import request_id
from app.jobs.service import EVENTS_LIMIT_MAX, JobService

# The route takes any text and the handlers a UUID: Litestar then checks the id after the
# guard (401 and 403 first, as on every route) and app.http.errors words a bad one as a 400.
# `{job_id:uuid}` would turn it into a routing miss: a bare 404, before the guard.
JOB_PATH = "/{job_id:str}"
# A job's flags: sent as anything but true or false, a 400 (Litestar would convert "true").
STRICT_BOOLEANS = ("coalescing",)


def job_filter(
    status: StatusQuery = None,
    queue: QueueQuery = None,
    task: TaskQuery = None,
    lock_key: LockKeyQuery = None,
    partition_key: PartitionKeyQuery = None,
    producer: ProducerQuery = None,
    consumer_group: ConsumerGroupQuery = None,
    created_after: CreatedAfterQuery = None,
    created_before: CreatedBeforeQuery = None,
    finished_after: FinishedAfterQuery = None,
    finished_before: FinishedBeforeQuery = None,
    args: ArgsQuery = None,
) -> JobFilter:
    """The listing's filters from the query string: one parser for the list and the counts."""
    return JobFilter.from_query(
        status=status,
        queue=queue,
        task=task,
        lock_key=lock_key,
        partition_key=partition_key,
        producer=producer,
        consumer_group=consumer_group,
        created_after=created_after,
        created_before=created_before,
        finished_after=finished_after,
        finished_before=finished_before,
        args=args,
    )


class JobsController(Controller):
    """Create, list, look at, cancel and retry jobs."""

    path = "/api/v1/jobs"
    tags = ["jobs"]
    # Not named "jobs": Litestar mistakes a body field of the same name for the dependency.
    dependencies = from_state("job_service")

    @post(
        "/trigger",
        status_code=HTTP_200_OK,
        summary="Create a job, or return the one with the same idempotency_key and request",
        description=TRIGGER_DESCRIPTION,
        raises=[],
        responses={409: KEY_CONFLICT, 415: NOT_JSON},
        opt=requires("write"),
    )
    async def trigger(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[JobCreate],
        job_service: NamedDependency[JobService],
    ) -> JobCreated:
        """Create a job in one transaction: dl_jobs row, event and pgqueuer dispatch."""
        require_json(request)
        await require_booleans(request, STRICT_BOOLEANS)
        return await job_service.trigger(data, request_id(request.scope))

    @post(
        "/trigger/bulk",
        status_code=HTTP_200_OK,
        summary="Create up to 1,000 jobs in one transaction, optionally as a batch",
        description="With `on_complete` (a job, as a trigger's body), the jobs this call "
        "creates make a batch: when every one of them has reached a final status, the "
        "`on_complete` job is created once, with the counts by status under `batch` in its "
        "args. The answer's `batch_id` names it (GET /api/v1/batches/{batch_id}).",
        raises=[],
        responses={409: BULK_KEY_CONFLICT, 415: NOT_JSON},
        opt=requires("write"),
    )
    async def trigger_bulk(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[JobBulkCreate],
        job_service: NamedDependency[JobService],
    ) -> JobBulkCreated:
        """All jobs or none: one invalid item rejects the request with a 400 naming it.

        Each item follows the single trigger's idempotency rules; `created` tells which
        items made a new job. An item whose key belongs to a different request is a 409
        naming it (and the earlier item of the call that holds the key, if one does).
        """
        require_json(request)
        await require_booleans(request, STRICT_BOOLEANS, items="jobs")
        batch_id: UUID | msgspec.UnsetType = msgspec.UNSET
        if data.on_complete is None:
            jobs = await job_service.trigger_many(data.jobs, request_id(request.scope))
        else:
            batch = await job_service.trigger_batch(
                data.jobs, data.on_complete, request_id(request.scope)
            )
            jobs, batch_id = batch.jobs, batch.batch_id
        warnings = await job_service.unserved_warnings(data.jobs) or msgspec.UNSET
        return JobBulkCreated(jobs=jobs, batch_id=batch_id, warnings=warnings)

    @get(
        "/",
        summary="List jobs, newest first, filtered and keyset-paged",
        description=LIST_DESCRIPTION,
        responses={**LIST_RESPONSES, 400: BAD_LIST_QUERY},
        dependencies={"filters": Provide(job_filter, sync_to_thread=False)},
        opt=requires("read"),
    )
    async def list_jobs(
        self,
        job_service: NamedDependency[JobService],
        filters: NamedDependency[JobFilter],
        limit: LimitQuery = LIST_LIMIT_DEFAULT,
        cursor: CursorQuery = None,
        include: IncludeQuery = None,
    ) -> JobPage:
        """Jobs matching every filter given, newest first, one page at a time."""
        with_result = "result" in parse_include(include)
        return await job_service.list_jobs(
            filters, cursor=cursor, limit=limit, with_result=with_result
        )

    @get(
        "/counts",
        summary="How many jobs matching the listing's filters are in each state",
        description=COUNTS_DESCRIPTION,
        responses={400: BAD_LIST_QUERY},
        dependencies={"filters": Provide(job_filter, sync_to_thread=False)},
        opt=requires("read"),
    )
    async def counts(
        self, job_service: NamedDependency[JobService], filters: NamedDependency[JobFilter]
    ) -> JobCounts:
        """Per-state counts of the jobs the same filters would list."""
        return await job_service.counts(filters)

    @post(
        "/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel up to 500 jobs, each on its own",
        description=bulk_action_description("canceled"),
        responses={400: BAD_ID_LIST, 415: NOT_JSON},
        opt=requires("write"),
    )
    async def cancel_many(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[JobIdList],
        job_service: NamedDependency[JobService],
    ) -> JobActionResults:
        """Each job as `POST /{job_id}/cancel` would; one result per id."""
        require_json(request)
        return JobActionResults(results=await job_service.cancel_many(data.job_ids))

    @post(
        "/retry",
        status_code=HTTP_200_OK,
        summary="Retry up to 500 failed, lost or canceled jobs, each on its own",
        description=bulk_action_description("retried"),
        responses={400: BAD_ID_LIST, 415: NOT_JSON},
        opt=requires("write"),
    )
    async def retry_many(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[JobIdList],
        job_service: NamedDependency[JobService],
    ) -> JobActionResults:
        """Each job as `POST /{job_id}/retry` would; one result per id."""
        require_json(request)
        return JobActionResults(results=await job_service.retry_many(data.job_ids))

    @get(
        JOB_PATH,
        summary="A job's status, progress, timings and stored fields",
        description="The job as stored now, the same answer as `/status`.",
        responses={**JOB_RESPONSES, 400: BAD_JOB_ID, 404: NOT_FOUND},
        opt=requires("read"),
    )
    async def get_job(
        self, job_id: FromPath[UUID], job_service: NamedDependency[JobService]
    ) -> Job:
        """The job as stored now (the same answer as /status)."""
        return await job_service.status(job_id)

    @get(
        JOB_PATH + "/status",
        summary="A job's status, progress and timings",
        responses={**JOB_RESPONSES, 400: BAD_JOB_ID, 404: NOT_FOUND},
        opt=requires("read"),
    )
    async def status(self, job_id: FromPath[UUID], job_service: NamedDependency[JobService]) -> Job:
        """The job as stored now; 404 when unknown, 400 when the id is not a UUID."""
        return await job_service.status(job_id)

    @get(
        JOB_PATH + "/events",
        summary="A job's history, oldest first",
        description=EVENTS_DESCRIPTION,
        responses={**EVENTS_RESPONSES, 400: BAD_JOB_ID, 404: NOT_FOUND},
        opt=requires("read"),
    )
    async def events(
        self,
        job_id: FromPath[UUID],
        job_service: NamedDependency[JobService],
        after: EventsAfterQuery = None,
        limit: EventsLimitQuery = EVENTS_LIMIT_MAX,
    ) -> JobHistory:
        """The job's events, oldest first, `limit` at a time."""
        return await job_service.events(job_id, after=after, limit=limit)

    @post(
        JOB_PATH + "/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel a job",
        responses={400: BAD_JOB_ID, 404: NOT_FOUND, 409: JOB_FINISHED},
        opt=requires("write"),
    )
    async def cancel(self, job_id: FromPath[UUID], job_service: NamedDependency[JobService]) -> Job:
        """Queued: canceled at once. Running: flagged, stopped at its next checkpoint.

        Finished: 409 with its status. Unknown: 404.
        """
        return await job_service.cancel(job_id)

    @post(
        JOB_PATH + "/retry",
        status_code=HTTP_200_OK,
        summary="Run a failed, lost or canceled job again",
        description=RETRY_DESCRIPTION,
        responses={**RETRY_RESPONSES, 400: BAD_JOB_ID, 404: NOT_FOUND, 409: NOT_RETRYABLE},
        opt=requires("write"),
    )
    async def retry(self, job_id: FromPath[UUID], job_service: NamedDependency[JobService]) -> Job:
        """Queue a failed, lost or canceled job again with a fresh attempt budget."""
        return await job_service.retry(job_id)
