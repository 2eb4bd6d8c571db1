"""The HTTP edge of a real `python -m app serve`: limits a client without a token meets first.

A half-sent head is answered 408 and closed after APP_HEADER_TIMEOUT_SEC, an oversized head
431 without being read to its end, an idle kept-alive connection closed; past
APP_MAX_CONCURRENT_REQUESTS a request gets 503 with Retry-After while /health and /ready
still answer; job streams past APP_STREAM_MAX / APP_STREAM_MAX_PER_TOKEN get 429; and every
answer carries the security headers (docs/security.md#http-edge).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.api_servers import ApiServer, api_server_on_fresh_database
from tests.support.databases import TestServer as PgServer
from tests.support.waiting import wait_until

WRITE_TOKEN = "edge-writer-" + uuid.uuid4().hex
READ_TOKEN = "edge-reader-" + uuid.uuid4().hex
TOKENS_JSON = json.dumps(
    [
        {"name": "writer", "token": WRITE_TOKEN, "scopes": ["write"]},
        {"name": "reader", "token": READ_TOKEN, "scopes": ["read"]},
    ]
)
HEADER_MAX_BYTES = 4096
HEADER_TIMEOUT_SEC = 1.0
KEEPALIVE_TIMEOUT_SEC = 1.0
# uvicorn's own keep-alive default is 5 s: closing well before it shows the setting applies.
KEEPALIVE_CLOSE_BOUND_SEC = 4.0
MAX_CONCURRENT = 3
STREAM_MAX = 3
STREAM_MAX_PER_TOKEN = 2
RETRY_AFTER_SEC = 7
# Generous: how long a test waits for the server to act before calling it a failure.
CLOSE_BOUND_SEC = 30.0
EDGE_ENV = {
    "API_TOKENS_JSON": TOKENS_JSON,
    "APP_HEADER_MAX_BYTES": str(HEADER_MAX_BYTES),
    "APP_HEADER_TIMEOUT_SEC": str(HEADER_TIMEOUT_SEC),
    "APP_KEEPALIVE_TIMEOUT_SEC": str(KEEPALIVE_TIMEOUT_SEC),
    "APP_MAX_CONCURRENT_REQUESTS": str(MAX_CONCURRENT),
    "APP_STREAM_MAX": str(STREAM_MAX),
    "APP_STREAM_MAX_PER_TOKEN": str(STREAM_MAX_PER_TOKEN),
    "APP_BUSY_RETRY_AFTER_SEC": str(RETRY_AFTER_SEC),
    "APP_STREAM_KEEPALIVE_SEC": "0.5",
}


@pytest.fixture(scope="module")
async def edge_server(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """The API with small edge limits, on a fresh database (no worker: jobs stay queued)."""
    async with api_server_on_fresh_database(
        pg_server, template_db, tmp_path_factory.mktemp("edge"), extra_env=EDGE_ENV
    ) as server:
        yield server


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _connect(server: ApiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = urlsplit(server.base_url)
    assert address.hostname is not None
    assert address.port is not None
    return await asyncio.open_connection(address.hostname, address.port)


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded wait)."""
    return await asyncio.wait_for(reader.read(), CLOSE_BOUND_SEC)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_edge_half_sent_head_is_answered_408_and_closed(edge_server: ApiServer) -> None:
    reader, writer = await _connect(edge_server)
    writer.write(b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Slow: still typi")
    await writer.drain()

    answer = await _read_until_closed(reader)  # EOF: the server closed the socket

    assert _status(answer) == 408
    assert answer.endswith(b'{"status_code": 408, "detail": "request head not received in time"}')
    writer.close()


async def test_edge_connection_that_sends_nothing_is_closed(edge_server: ApiServer) -> None:
    reader, writer = await _connect(edge_server)

    assert await _read_until_closed(reader) == b""
    writer.close()


async def test_edge_idle_kept_alive_connection_is_closed(edge_server: ApiServer) -> None:
    reader, writer = await _connect(edge_server)
    writer.write(b"GET /health HTTP/1.1\r\nHost: edge\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert _status(head) == 200
    length = int(
        next(line for line in head.split(b"\r\n") if line.startswith(b"content-length:")).split(
            b":"
        )[1]
    )
    await reader.readexactly(length)

    # The keep-alive timeout, not uvicorn's 5 s default, closes the idle connection.
    rest = await asyncio.wait_for(reader.read(), KEEPALIVE_CLOSE_BOUND_SEC)

    assert rest == b""
    writer.close()


async def test_edge_oversized_head_gets_431(edge_server: ApiServer) -> None:
    reader, writer = await _connect(edge_server)
    big = b"a" * (2 * HEADER_MAX_BYTES)
    writer.write(b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Big: " + big + b"\r\n\r\n")
    await writer.drain()

    answer = await _read_until_closed(reader)

    assert _status(answer) == 431
    assert b"request head larger than the limit" in answer
    writer.close()


async def test_edge_head_under_the_limit_is_served(edge_server: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=edge_server.base_url) as client:
        response = await client.get("/health", headers={"X-Fill": "a" * (HEADER_MAX_BYTES // 2)})

    assert response.status_code == 200


async def test_edge_endless_head_is_not_read_to_its_end(edge_server: ApiServer) -> None:
    """A 100 MB header: refused near the limit, so the client cannot even send it all."""
    _, writer = await _connect(edge_server)
    host, port = writer.get_extra_info("sockname")[:2]
    writer.write(b"GET /health HTTP/1.1\r\nHost: edge\r\nX-Endless: ")
    sent = await _send_until_refused(writer, 100 * 1024 * 1024)

    # Socket buffers hold a few MB at most; the server read a few KB of them.
    assert sent < 100 * 1024 * 1024
    writer.close()
    # Refused for its size (431), not for its slowness (408): the answer may be lost in the
    # reset, the server's log line is not.
    await wait_until(
        lambda: (
            f"431 request head larger than the limit from {host}:{port}"
            in edge_server.log_path.read_text(errors="replace")
        ),
        timeout=CLOSE_BOUND_SEC,
        what="the server to log the 431 for the endless head",
        diagnostics=edge_server.log_tail,
    )


async def _send_until_refused(writer: asyncio.StreamWriter, total: int) -> int:
    """Send up to `total` bytes of header; how many went out before the server cut in."""
    chunk = b"a" * 65536
    sent = 0
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        while sent < total:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), CLOSE_BOUND_SEC)
            sent += len(chunk)
    return sent


async def _hold_slow_upload(server: ApiServer) -> asyncio.StreamWriter:
    """A trigger whose body never arrives: in progress on the server until closed."""
    _, writer = await _connect(server)
    writer.write(
        b"POST /api/v1/jobs/trigger HTTP/1.1\r\nHost: edge\r\n"
        b"Authorization: Bearer " + WRITE_TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    await writer.drain()
    return writer


async def test_edge_sheds_load_with_503_and_retry_after_while_probes_answer(
    edge_server: ApiServer,
) -> None:
    async with httpx.AsyncClient(
        base_url=edge_server.base_url, headers=_bearer(READ_TOKEN), timeout=10
    ) as client:
        holds = [await _hold_slow_upload(edge_server) for _ in range(MAX_CONCURRENT)]
        try:
            # The limit is reached once the server has seen the last upload's head.
            [shed] = await wait_until(
                _answer_if_status(client, "/info", 503),
                timeout=CLOSE_BOUND_SEC,
                what="a request past the concurrency limit to be shed",
                diagnostics=edge_server.log_tail,
            )
            assert shed.headers["retry-after"] == str(RETRY_AFTER_SEC)
            assert shed.json() == {
                "status_code": 503,
                "detail": "too many requests in progress; try again later",
                "retry_after_sec": RETRY_AFTER_SEC,
            }
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/ready")).status_code == 200
            # One place given back: with one fewer than the limit in progress, a request fits.
            holds.pop().close()
            await wait_until(
                _answer_if_status(client, "/info", 200),
                timeout=CLOSE_BOUND_SEC,
                what="a request to fit beside one fewer upload than the limit",
            )
        finally:
            for writer in holds:
                writer.close()


def _answer_if_status(
    client: httpx.AsyncClient, path: str, status: int
) -> Callable[[], Awaitable[list[httpx.Response]]]:
    """A wait_until predicate: the answer to GET `path` in a list once it has `status`."""

    async def check() -> list[httpx.Response]:
        response = await client.get(path)
        return [response] if response.status_code == status else []

    return check


async def _queued_job(server: ApiServer) -> str:
    """A job no worker will run: its stream stays open."""
    async with httpx.AsyncClient(base_url=server.base_url, headers=_bearer(WRITE_TOKEN)) as c:
        response = await c.post(
            "/api/v1/jobs/trigger",
            json={"queue": "edge.idle", "task": "noop", "lock_key": f"edge-{uuid.uuid4()}"},
        )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["job_id"])


@contextlib.asynccontextmanager
async def _stream(
    client: httpx.AsyncClient, job_id: str, token: str
) -> AsyncIterator[httpx.Response]:
    """A job stream whose answer has started (status and headers received), open until exit."""
    async with client.stream(
        "GET", f"/api/v1/jobs/{job_id}/stream", headers=_bearer(token)
    ) as response:
        yield response


async def test_edge_job_streams_capped_per_token_and_per_process(edge_server: ApiServer) -> None:
    job_id = await _queued_job(edge_server)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=edge_server.base_url, timeout=10)
        )
        for _ in range(STREAM_MAX_PER_TOKEN):
            opened = await stack.enter_async_context(_stream(client, job_id, READ_TOKEN))
            assert opened.status_code == 200
        async with _stream(client, job_id, READ_TOKEN) as refused:
            await refused.aread()
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == str(RETRY_AFTER_SEC)
            assert "token 'reader' has too many job streams open" in refused.json()["detail"]
        # Another token still gets the process's last place, then the process is full.
        third = await stack.enter_async_context(_stream(client, job_id, WRITE_TOKEN))
        assert third.status_code == 200
        # Open streams are not requests in progress: the concurrency limit (3) is not used up.
        info = await client.get("/info", headers=_bearer(READ_TOKEN))
        assert info.status_code == 200
        async with _stream(client, job_id, WRITE_TOKEN) as refused:
            await refused.aread()
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == str(RETRY_AFTER_SEC)
            assert "too many job streams open on this server" in refused.json()["detail"]

    # The closed streams give their places back.
    async with httpx.AsyncClient(base_url=edge_server.base_url, timeout=10) as client:

        async def reopened() -> bool:
            async with _stream(client, job_id, READ_TOKEN) as response:
                return response.status_code == 200

        await wait_until(reopened, timeout=CLOSE_BOUND_SEC, what="a closed stream's place back")


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.mark.parametrize(
    "path", ["/dashboard/", "/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css"]
)
async def test_edge_dashboard_answers_carry_csp_and_framing_refusal(
    edge_server: ApiServer, path: str
) -> None:
    async with httpx.AsyncClient(base_url=edge_server.base_url) as client:
        response = await client.get(path)

    assert response.status_code == 200
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    policy = _directives(response.headers["content-security-policy"])
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/api/v1/jobs", READ_TOKEN, 200),
        ("/api/v1/jobs", None, 401),
        ("/no/such/route", None, 404),
        ("/health", None, 200),
        ("/schema/openapi.json", None, 200),
    ],
)
async def test_edge_api_answers_carry_nosniff_no_referrer_and_no_store(
    edge_server: ApiServer, path: str, token: str | None, status: int
) -> None:
    async with httpx.AsyncClient(base_url=edge_server.base_url) as client:
        response = await client.get(path, headers=_bearer(token) if token else {})

    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["cache-control"] == "no-store"
    policy = _directives(response.headers["content-security-policy"])
    assert policy == {"default-src": "'none'", "frame-ancestors": "'none'"}


def _directives(policy: str) -> dict[str, str]:
    return {
        name: value.strip()
        for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))
        if name
    }
