"""`dataloader` against servers that are not (quite) the dataloader API.

None at all, an older one without the event stream, one whose stream breaks off, one that fails
or hangs, and one that records the token. Real local HTTP servers with scripted answers.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.devserver.embedded_postgres import free_port
from tests.support.cli_runner import Cli
from tests.support.local_servers import RecordingHttpServer, Reply, http_server

JOB_ID = str(uuid.uuid4())
STATUS_PATH = f"/api/v1/jobs/{JOB_ID}/status"
STREAM_PATH = f"/api/v1/jobs/{JOB_ID}/stream"


def job(status: str, **fields: Any) -> dict[str, Any]:
    """A Job as the API would send it (the fields the CLI needs, and a few more)."""
    return {
        "job_id": JOB_ID,
        "status": status,
        "queue": "etl.default",
        "task": "noop",
        "lock_key": "k",
        "args": {},
        "attempt": 0 if status == "queued" else 1,
        "max_attempts": 5,
        "created_at": "2026-11-24T15:00:00Z",
        **fields,
    }


def json_reply(status: int, body: Any) -> Reply:
    return Reply(status=status, body=json.dumps(body))


@pytest.fixture
def server() -> Iterator[RecordingHttpServer]:
    with http_server() as recording:
        yield recording


async def test_unreachable_url_exits_3_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    by_flag = await Cli("http://127.0.0.1:9")("--url", url, "queues")
    by_env = await Cli(url)("status", JOB_ID)

    for result in (by_flag, by_env):
        assert result.returncode == 3, str(result)
        assert f"error: cannot connect to the dataloader API at {url}" in result.stderr
        assert "connection refused" in result.stderr


async def test_unreachable_api_is_one_line_naming_url_flag_and_variable() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = await Cli(url)("status", JOB_ID, env={"COLUMNS": "60"})  # narrow: still one line

    assert result.returncode == 3, str(result)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, str(result)
    line = result.stderr.strip()
    assert line.startswith(f"error: cannot connect to the dataloader API at {url}: "), line
    assert "--url" in line, line
    assert "DATALOADER_URL" in line, line
    assert "Traceback" not in result.stderr


async def test_default_url_comes_from_app_host_and_app_port(server: RecordingHttpServer) -> None:
    server.script("/api/v1/queues", json_reply(200, {"queues": []}))
    app_env = {"APP_HOST": "127.0.0.1", "APP_PORT": str(server.port)}

    await Cli(None).ok("queues", env=app_env)

    assert [request.path for request in server.requests] == ["/api/v1/queues"]


async def test_url_flag_then_dataloader_url_win_over_app_port(
    server: RecordingHttpServer,
) -> None:
    server.script("/api/v1/queues", json_reply(200, {"queues": []}))
    dead = f"http://127.0.0.1:{free_port()}"
    app_env = {"APP_HOST": "127.0.0.1", "APP_PORT": str(server.port)}

    # DATALOADER_URL wins over APP_PORT: the dead address is tried, the server sees nothing.
    by_env = await Cli(dead)("queues", env=app_env)
    assert by_env.returncode == 3, str(by_env)
    assert server.requests == []
    # --url wins over DATALOADER_URL.
    await Cli(dead).ok("--url", server.url(""), "queues", env=app_env)
    assert len(server.requests) == 1


async def test_bad_app_port_without_a_url_is_a_usage_error() -> None:
    result = await Cli(None)("queues", env={"APP_PORT": "eighty"})

    assert result.returncode == 2, str(result)
    assert "APP_PORT='eighty' is not a port number" in result.stderr
    assert "Traceback" not in result.stderr


async def test_malformed_url_is_a_usage_error() -> None:
    result = await Cli("ftp://example.org")("queues")

    assert result.returncode == 2, str(result)
    assert "is not an http:// or https:// URL" in result.stderr


async def test_token_is_sent_as_a_bearer_header(server: RecordingHttpServer) -> None:
    server.script("/api/v1/queues", json_reply(200, {"queues": []}))
    cli = Cli(server.url(""))

    await cli.ok("--token", "from-flag", "queues")
    await cli.ok("queues", env={"DATALOADER_TOKEN": "from-env"})
    await cli.ok("queues")

    sent = [request.headers.get("authorization") for request in server.requests]
    assert sent == ["Bearer from-flag", "Bearer from-env", None]


async def test_server_error_exits_1_with_its_detail(server: RecordingHttpServer) -> None:
    server.script("/api/v1/queues", json_reply(500, {"status_code": 500, "detail": "boom"}))

    result = await Cli(server.url(""))("queues")

    assert result.returncode == 1, str(result)
    assert result.stderr.strip() == "error: boom"


async def test_something_else_than_the_api_exits_1(server: RecordingHttpServer) -> None:
    result = await Cli(server.url(""))("queues")  # every path answers "ok" as text

    assert result.returncode == 1, str(result)
    assert "unexpected answer" in result.stderr
    assert "dataloader API" in result.stderr


async def test_a_server_that_hangs_exits_3_after_the_timeout(server: RecordingHttpServer) -> None:
    server.script("/api/v1/queues", Reply(delay_sec=10, body='{"queues": []}'))

    result = await Cli(server.url(""))("--timeout", "0.5", "queues")

    assert result.returncode == 3, str(result)
    assert "no answer from the dataloader API" in result.stderr
    assert "0.5 s" in result.stderr


async def test_wait_polls_status_when_the_server_has_no_stream(
    server: RecordingHttpServer,
) -> None:
    server.script(STREAM_PATH, json_reply(404, {"status_code": 404, "detail": "Not Found"}))
    server.script(
        STATUS_PATH,
        json_reply(200, job("queued")),
        json_reply(200, job("running", progress={"processed": 1, "total": 2})),
        json_reply(200, job("failed", error="RuntimeError: nope", attempt=1)),
    )

    result = await Cli(server.url(""))("status", JOB_ID, "--wait")

    assert result.returncode == 1, str(result)
    assert len(server.requests_to(STREAM_PATH)) == 1
    assert len(server.requests_to(STATUS_PATH)) == 3
    assert "running attempt 1/5  1/2 (50%)" in result.stderr
    assert "error: RuntimeError: nope" in result.stderr


class BreakingStream:
    """An SSE server whose first stream breaks off mid-job; the second one runs to the end."""

    def __init__(self) -> None:
        self.connections = 0
        self.status_requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != STREAM_PATH:
                    outer.status_requests += 1
                    self.send_error(500)
                    return
                outer.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                events = [job("running", progress={"processed": 1, "total": 2})]
                if outer.connections > 1:
                    events.append(job("succeeded", progress={"processed": 2, "total": 2}))
                self.wfile.write(b": keep-alive\n\n")
                for event in events:
                    self.wfile.write(f"event: job\ndata: {json.dumps(event)}\n\n".encode())
                # HTTP/1.0 without a length: closing the connection ends the stream.

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


async def test_wait_reopens_a_stream_that_broke_off() -> None:
    stream = BreakingStream()
    try:
        result = await Cli(stream.url)("status", JOB_ID, "--wait", "--json")
    finally:
        stream.server.shutdown()
        stream.server.server_close()

    assert result.returncode == 0, str(result)
    assert result.json()["status"] == "succeeded"
    assert stream.connections == 2
    assert stream.status_requests == 0
