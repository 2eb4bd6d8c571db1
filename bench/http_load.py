"""A lean HTTP/1.1 keep-alive client on raw asyncio streams, and a bounded-concurrency load.

httpx would spend the CPU the server needs on a small machine; this writes a request,
reads the status line, the headers and a Content-Length (or chunked) body, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class Response:
    """Status code and body of one answer."""

    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


def encode_request(
    method: str, path: str, host: str, body: bytes | None = None, content_type: str = ""
) -> bytes:
    """The bytes of one keep-alive request."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body is not None:
        head += f"Content-Type: {content_type or 'application/json'}\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("ascii") + b"\r\n" + (body or b"")


class HttpConnection:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> HttpConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket, if open."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    async def send(self, raw: bytes) -> Response:
        """Send one encoded request and read its answer."""
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        try:
            writer.write(raw)
            await writer.drain()
            response, keep_alive = await _read_response(reader)
        except BaseException:
            await self.close()
            raise
        if not keep_alive:
            await self.close()
        return response

    async def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> Response:
        """Encode and send one request."""
        return await self.send(encode_request(method, path, self.host_header, body, content_type))


async def _read_response(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ConnectionError(f"not an HTTP status line: {status_line[:80]!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep_alive = value == b"keep-alive" or (keep_alive and value != b"close")
    if chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()
        keep_alive = False
    return Response(status, body), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass
class LoadResult:
    """What a load run saw: latencies of 2xx answers, errors, wall time."""

    requests: int
    elapsed_sec: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Requests answered per second (errors included)."""
        return self.requests / self.elapsed_sec if self.elapsed_sec > 0 else 0.0


async def run_load(
    host: str,
    port: int,
    make_request: Callable[[int, str], bytes],
    total: int,
    concurrency: int,
    *,
    keep_bodies: bool = False,
) -> LoadResult:
    """Send `total` requests over `concurrency` keep-alive connections, as fast as answered.

    `make_request(index, host_header)` builds request number `index`. Non-2xx answers and
    broken connections count as errors; the connection reconnects and carries on.
    """
    result = LoadResult(requests=total, elapsed_sec=0.0)
    counter = iter(range(total))

    def record_error(text: str) -> None:
        result.errors += 1
        if len(result.error_samples) < MAX_ERROR_SAMPLES:
            result.error_samples.append(text)

    async def client() -> None:
        async with HttpConnection(host, port) as connection:
            for index in counter:
                raw = make_request(index, connection.host_header)
                started = time.perf_counter()
                try:
                    response = await connection.send(raw)
                except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
                    record_error(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed_ms = (time.perf_counter() - started) * 1000
                if response.ok:
                    result.latencies_ms.append(elapsed_ms)
                else:
                    record_error(f"HTTP {response.status}: {response.body[:200]!r}")
                if keep_bodies:
                    result.responses.append(response)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(max(1, min(concurrency, total)))))
    result.elapsed_sec = time.perf_counter() - started
    return result
