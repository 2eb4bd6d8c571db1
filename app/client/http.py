"""A small typed HTTP client for the dataloader API; every failure is one of three errors.

`ApiError` is an answer with a 4xx/5xx status (its `detail` is the server's), `ApiUnreachable`
means no answer at all (refused, timed out, not HTTP), and `StreamUnavailable` tells a caller
of `stream_job()` that this server has no event stream, so it should poll instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from app import __version__
from app.client.models import (
    Job,
    JobEvents,
    JobPage,
    Queue,
    QueueFairness,
    QueueLimits,
    QueueList,
    Schedule,
    SchedulePage,
    ScheduleRun,
    TriggerResult,
    Workflow,
    WorkflowCanceled,
    WorkflowCreated,
    WorkflowPage,
)

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8081"
DEFAULT_TIMEOUT_SEC = 10.0
# The server sends a keep-alive comment every 15 s; silence for this long means a dead stream.
STREAM_READ_TIMEOUT_SEC = 45.0
API = "/api/v1"
# Every connection error ends with how to aim the client elsewhere.
WHERE_TO_POINT = "is the API running? point the client at it with --url or DATALOADER_URL"


class ClientError(Exception):
    """Something went wrong talking to the API."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(ClientError):
    """The API answered with an error status; `detail` is its explanation."""

    def __init__(self, status_code: int, detail: str, body: Any = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.body = body


class ApiUnreachable(ClientError):
    """No usable answer: connection refused, timeout, or not an HTTP server."""


class StreamUnavailable(ClientError):
    """The server has no /stream endpoint (an older server); poll /status instead."""


class StreamInterrupted(ClientError):
    """The event stream broke off before the job finished; reconnecting is safe."""


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A decoded answer and the JSON exactly as the API sent it (for --json)."""

    data: T
    body: bytes


def segment(value: str) -> str:
    """One path segment, percent-encoded (names and ids never contain '/')."""
    return quote(value, safe=":@")


class DataloaderClient:
    """Synchronous client for /api/v1; one connection pool, closed by `close()` or `with`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout_sec: float = DEFAULT_TIMEOUT_SEC,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_sec = timeout_sec
        headers = {"User-Agent": f"dataloader-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_sec, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> DataloaderClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Jobs

    def trigger(self, body: Mapping[str, Any]) -> Reply[TriggerResult]:
        """Create a job (or find the one with the same idempotency_key)."""
        return self._call("POST", f"{API}/jobs/trigger", TriggerResult, json=body)

    def job(self, job_id: str) -> Reply[Job]:
        """A job as stored now (GET .../status, which every server version has)."""
        return self._call("GET", f"{API}/jobs/{segment(job_id)}/status", Job)

    def cancel(self, job_id: str) -> Reply[Job]:
        """Cancel a queued job at once, or flag a running one to stop at its next checkpoint."""
        return self._call("POST", f"{API}/jobs/{segment(job_id)}/cancel", Job)

    def retry(self, job_id: str) -> Reply[Job]:
        """Queue a failed, lost or canceled job again."""
        return self._call("POST", f"{API}/jobs/{segment(job_id)}/retry", Job)

    def events(self, job_id: str) -> Reply[JobEvents]:
        """A job's history, oldest first."""
        return self._call("GET", f"{API}/jobs/{segment(job_id)}/events", JobEvents)

    def list_jobs(self, filters: Mapping[str, str | int | None]) -> Reply[JobPage]:
        """One page of jobs, newest first; None-valued filters are left out."""
        params = {key: str(value) for key, value in filters.items() if value is not None}
        return self._call("GET", f"{API}/jobs", JobPage, params=params)

    def stream_job(self, job_id: str) -> Generator[Reply[Job], None, None]:
        """The job now, then again on each change, until a final status (Server-Sent Events).

        Raises StreamUnavailable when the server has no stream endpoint and StreamInterrupted
        when the connection drops; the stream can simply be opened again.
        """
        timeout = httpx.Timeout(self.timeout_sec, read=STREAM_READ_TIMEOUT_SEC)
        path = f"{API}/jobs/{segment(job_id)}/stream"
        try:
            with self._http.stream(
                "GET", path, headers={"Accept": "text/event-stream"}, timeout=timeout
            ) as response:
                if response.status_code in (404, 405):
                    # No such route, or no such job: polling /status tells which.
                    raise StreamUnavailable(f"no event stream at {path}")
                if response.is_error:
                    response.read()
                    raise self._api_error(response)
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raise StreamUnavailable(f"{path} is not an event stream")
                for event, data in sse_events(response.iter_lines()):
                    if event == "job":
                        body = data.encode()
                        yield Reply(self._decode(body, Job, response), body)
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            raise StreamInterrupted(f"event stream interrupted: {exc}") from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    # Queues

    def queues(self) -> Reply[QueueList]:
        """Every known queue with its depth, state and last hour's throughput."""
        return self._call("GET", f"{API}/queues", QueueList)

    def set_queue_paused(self, queue: str, paused: bool) -> Reply[Queue]:
        """Pause (workers take no new jobs from it) or resume a queue."""
        action = "pause" if paused else "resume"
        return self._call("POST", f"{API}/queues/{segment(queue)}/{action}", Queue)

    def queue_limits(self, queue: str) -> Reply[QueueLimits]:
        """A queue's rate limits (null for a limit it does not have)."""
        return self._call("GET", f"{API}/queues/{segment(queue)}/limits", QueueLimits)

    def set_queue_limits(self, queue: str, limits: QueueLimits) -> Reply[QueueLimits]:
        """Replace both of a queue's rate limits; a None limit is removed."""
        body = msgspec.to_builtins(limits)
        return self._call("PUT", f"{API}/queues/{segment(queue)}/limits", QueueLimits, json=body)

    def queue_fairness(self, queue: str) -> Reply[QueueFairness]:
        """Whether a queue starts its jobs round-robin over their partition_key."""
        return self._call("GET", f"{API}/queues/{segment(queue)}/fairness", QueueFairness)

    def set_queue_fairness(self, queue: str, by: str | None) -> Reply[QueueFairness]:
        """Make a queue fair by `by`, or not (None)."""
        path = f"{API}/queues/{segment(queue)}/fairness"
        return self._call("PUT", path, QueueFairness, json={"by": by})

    # Schedules

    def schedules(self, *, after: str | None = None, limit: int = 100) -> Reply[SchedulePage]:
        """One page of schedules by name."""
        params: dict[str, str] = {"limit": str(limit)}
        if after is not None:
            params["after"] = after
        return self._call("GET", f"{API}/schedules", SchedulePage, params=params)

    def schedule(self, name: str) -> Reply[Schedule]:
        """One schedule with its next fire times."""
        return self._call("GET", f"{API}/schedules/{segment(name)}", Schedule)

    def set_schedule_enabled(self, name: str, enabled: bool) -> Reply[Schedule]:
        """Enable (from the next match after now) or disable a schedule."""
        action = "enable" if enabled else "disable"
        return self._call("POST", f"{API}/schedules/{segment(name)}/{action}", Schedule)

    def run_schedule(self, name: str) -> Reply[ScheduleRun]:
        """Create the schedule's job now."""
        return self._call("POST", f"{API}/schedules/{segment(name)}/run", ScheduleRun)

    # Workflows

    def create_workflow(self, body: Mapping[str, Any]) -> Reply[WorkflowCreated]:
        """Create every step of a workflow in one transaction."""
        return self._call("POST", f"{API}/workflows", WorkflowCreated, json=body)

    def list_workflows(self, params: Mapping[str, str | int | None]) -> Reply[WorkflowPage]:
        """One page of workflows, newest first; None-valued parameters are left out."""
        query = {key: str(value) for key, value in params.items() if value is not None}
        return self._call("GET", f"{API}/workflows", WorkflowPage, params=query)

    def workflow(self, workflow_id: str) -> Reply[Workflow]:
        """A workflow with every step's status."""
        return self._call("GET", f"{API}/workflows/{segment(workflow_id)}", Workflow)

    def cancel_workflow(self, workflow_id: str) -> Reply[WorkflowCanceled]:
        """Cancel the steps that have not finished."""
        return self._call(
            "POST", f"{API}/workflows/{segment(workflow_id)}/cancel", WorkflowCanceled
        )

    # Plumbing

    def _call(
        self,
        method: str,
        path: str,
        into: type[T],
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Reply[T]:
        """Send one request; decode a 2xx body into `into`, raise ApiError otherwise."""
        try:
            response = self._http.request(method, path, params=params, json=json)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.is_error:
            raise self._api_error(response)
        return Reply(self._decode(response.content, into, response), response.content)

    def _decode(self, body: bytes, into: type[T], response: httpx.Response) -> T:
        try:
            return msgspec.json.decode(body, type=into)
        except msgspec.MsgspecError as exc:
            raise ApiError(
                response.status_code,
                f"unexpected answer from {response.request.url} (is {self.base_url} a "
                f"dataloader API?): {exc}",
            ) from exc

    @staticmethod
    def _api_error(response: httpx.Response) -> ApiError:
        """The server's `detail`, else its text, else the reason phrase."""
        body: Any = None
        with contextlib.suppress(msgspec.DecodeError):
            body = msgspec.json.decode(response.content)
        if isinstance(body, dict) and body.get("detail"):
            detail = str(body["detail"])
        else:
            text = response.text.strip()
            detail = text[:300] if text else response.reason_phrase
            detail = f"HTTP {response.status_code}: {detail}"
        if response.status_code == 401:
            detail += "; set DATALOADER_TOKEN or pass --token"
        elif response.status_code == 403:
            detail += "; use a token with that scope"
        return ApiError(response.status_code, detail, body)

    def _unreachable(self, exc: httpx.TransportError) -> ApiUnreachable:
        if isinstance(exc, httpx.ConnectError):
            reason = "connection refused" if "refused" in str(exc).lower() else str(exc)
            reason = " ".join(reason.split())  # one line, whatever the OS said
            return ApiUnreachable(
                f"cannot connect to the dataloader API at {self.base_url}: {reason}"
                f" ({WHERE_TO_POINT})"
            )
        if isinstance(exc, httpx.TimeoutException):
            return ApiUnreachable(
                f"no answer from the dataloader API at {self.base_url} within "
                f"{self.timeout_sec:g} s"
            )
        return ApiUnreachable(
            f"request to the dataloader API at {self.base_url} failed: "
            f"{' '.join(str(exc).split())} ({WHERE_TO_POINT})"
        )


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from Server-Sent Events lines; comments and ids are skipped."""
    event = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue  # keep-alive comment
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    # An event cut off by the end of the stream is incomplete: dropped, as the SSE spec says.
