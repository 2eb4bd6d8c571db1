"""The one place where errors become HTTP answers; nothing a client sends yields a 500."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.domain.errors import (
    BatchNotFoundError,
    IdempotencyConflictError,
    InvalidJobError,
    JobError,
    JobNotFoundError,
    JobStatusConflictError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    WorkflowKeyConflictError,
)
from app.http.request_id import request_id
from app.jobs.availability import database_unreachable, transient_conflict

logger = logging.getLogger("app.http")


class ErrorResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every 4xx and 5xx: `detail` says what is wrong, naming the field when there is one."""

    status_code: int
    detail: str
    # A 409 about a job's status carries that status.
    job_status: str | None = None
    # A 409 about an idempotency_key carries the id of the job that holds the key.
    job_id: str | None = None
    # ... or of the workflow that holds it.
    workflow_id: str | None = None
    # A 503 says when to try again, as its Retry-After header does.
    retry_after_sec: int | None = None
    # The answer's X-Request-ID header: the server's log holds the cause under this id.
    request_id: str | None = None


def error_response(status_code: int, description: str, detail: str, **extra: Any) -> ResponseSpec:
    """A documented error answer with one example."""
    return ResponseSpec(
        data_container=ErrorResponse,
        description=description,
        generate_examples=False,
        examples=[
            Example(
                summary=description,
                value={"status_code": status_code, "detail": detail, **extra},
            )
        ],
    )


_STATUS_BY_ERROR: list[tuple[type[JobError], int]] = [
    (InvalidJobError, HTTP_400_BAD_REQUEST),
    (JobNotFoundError, HTTP_404_NOT_FOUND),
    (BatchNotFoundError, HTTP_404_NOT_FOUND),
    (JobStatusConflictError, HTTP_409_CONFLICT),
    (IdempotencyConflictError, HTTP_409_CONFLICT),
    (WorkflowKeyConflictError, HTTP_409_CONFLICT),
    (ScheduleNotFoundError, HTTP_404_NOT_FOUND),
    (ScheduleExistsError, HTTP_409_CONFLICT),
]


def _body(
    request: Request[Any, Any, Any], status_code: int, detail: str, **extra: object
) -> Response[dict[str, object]]:
    body = {"status_code": status_code, "detail": detail, **extra}
    return Response({**body, "request_id": request_id(request.scope)}, status_code=status_code)


def _readable(message: str) -> str:
    """msgspec names a failed regex by its source; say what the rule is instead."""
    if "matching regex" not in message:
        return message
    if "\\s" in message:
        return "Expected non-blank text without NUL characters"
    return "Expected only letters, digits and the characters . _ : -"


def job_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    """A domain error: the client's fault, with the domain's message."""
    assert isinstance(exc, JobError)
    status_code = next(
        (code for kind, code in _STATUS_BY_ERROR if isinstance(exc, kind)), HTTP_400_BAD_REQUEST
    )
    extra: dict[str, object] = {}
    if isinstance(exc, JobStatusConflictError):
        extra["job_status"] = exc.status
    if isinstance(exc, IdempotencyConflictError):
        extra["job_id"] = str(exc.job_id)
    if isinstance(exc, WorkflowKeyConflictError):
        extra["workflow_id"] = str(exc.workflow_id)
    return _body(request, status_code, exc.message, **extra)


def http_exception_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    """Litestar's own 4xx (validation, size, routing), with the first problem in `detail`."""
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    extra = exc.extra
    if isinstance(extra, list) and (bad_ids := [p for p in extra if _is_bad_path_uuid(p)]):
        # A malformed id is reported only when nothing else is wrong, as when handlers
        # parsed it themselves after the query had been validated.
        extra = [problem for problem in extra if problem not in bad_ids]
        if not extra:
            return _not_a_uuid(request, str(bad_ids[0].get("key")))
    if isinstance(extra, list) and extra and isinstance(extra[0], dict) and extra[0].get("message"):
        first = extra[0]
        where = first.get("key")
        message = _readable(str(first["message"]))
        detail = message + (f" (field `{where}`)" if where else "")
    body: dict[str, object] = {"status_code": exc.status_code, "detail": detail}
    if extra:
        body["extra"] = extra
    body["request_id"] = request_id(request.scope)
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _is_bad_path_uuid(problem: object) -> bool:
    """A path parameter typed UUID (`job_id`) that is not one."""
    return (
        isinstance(problem, dict)
        and problem.get("source") == "path"
        and problem.get("message") == "Invalid UUID"
    )


def _not_a_uuid(request: Request[Any, Any, Any], name: str) -> Response[dict[str, object]]:
    """A path id that is not a UUID (`job_id`): the value as sent, like any invalid job."""
    raw = str(request.path_params.get(name, ""))
    return _body(request, HTTP_400_BAD_REQUEST, f"{name} {raw[:64]!r} is not a UUID")


# How long a client is asked to wait after a 503 (Retry-After). A restart or failover takes
# seconds, and slots free up as other clients finish; a short wait keeps recovery quick
# without a storm of immediate retries.
RETRY_AFTER_SEC = 2
UNAVAILABLE_DETAIL = "database unavailable"
# Every guard in front of the database should have caught the value; if one did not, the
# client learns only that a value was refused, never the database's words (they may name
# columns, types, encodings, limits).
REFUSED_VALUE_DETAIL = (
    "a value in this request could not be stored; the server log holds the cause under this "
    "request_id"
)


def database_unavailable_response(request: Request[Any, Any, Any]) -> Response[dict[str, object]]:
    """The 503 every unreachable database becomes: a fixed message and Retry-After.

    The database's own message stays in the logs: it may name hosts, roles and settings.
    """
    response = _body(
        request, HTTP_503_SERVICE_UNAVAILABLE, UNAVAILABLE_DETAIL, retry_after_sec=RETRY_AFTER_SEC
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SEC)
    return response


def database_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    """Data the database refused is a 400; a database that is gone or full is a 503."""
    # Down, restarting, refusing connections (out of slots: SQLSTATE class 53, 57P03),
    # the connection gone, or this process's pool exhausted: see app/jobs/availability.py.
    # A transaction that lost deadlocks more often than the manager runs it again
    # (app.jobs.manager.again_on_conflict): the same request succeeds later.
    if database_unreachable(exc) or transient_conflict(exc):
        logger.warning(
            "database unavailable on %s %s (request %s): %s: %s",
            request.method,
            request.url.path,
            request_id(request.scope),
            type(exc).__name__,
            exc,
        )
        return database_unavailable_response(request)
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        if sqlstate.startswith("22"):  # data exception: the value itself is unacceptable
            logger.warning(
                "database refused a value on %s %s (request %s): %s",
                request.method,
                request.url.path,
                request_id(request.scope),
                exc.orig,
            )
            return _body(request, HTTP_400_BAD_REQUEST, REFUSED_VALUE_DETAIL)
    return _internal_error(request, exc, "unexpected database error")


def undecodable_body_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    """A body that is not UTF-8 cannot be JSON."""
    return _body(request, HTTP_400_BAD_REQUEST, "request body is not valid UTF-8 JSON")


def recursion_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    """JSON nested deeper than the decoder's recursion limit is the client's fault."""
    if "deserializing" in str(exc):  # msgspec's decoder; any other recursion is a bug of ours
        return _body(request, HTTP_400_BAD_REQUEST, "request body is nested too deeply")
    return unexpected_error_handler(request, exc)


def unexpected_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    """A bug of ours: log it with its traceback, answer 500 without details."""
    return _internal_error(request, exc, "unhandled error")


def _internal_error(
    request: Request[Any, Any, Any], exc: Exception, what: str
) -> Response[dict[str, object]]:
    """Log `what` happened with the traceback and the request id; the client learns nothing."""
    logger.error(
        "%s on %s %s (request %s)",
        what,
        request.method,
        request.url.path,
        request_id(request.scope),
        exc_info=exc,
    )
    return _body(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    UnicodeDecodeError: undecodable_body_handler,
    RecursionError: recursion_error_handler,
    Exception: unexpected_error_handler,
    JobError: job_error_handler,
    HTTPException: http_exception_handler,
    DBAPIError: database_error_handler,
    PoolTimeoutError: database_error_handler,
    OSError: database_error_handler,
}
