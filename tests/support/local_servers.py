"""Real local servers for the built-in pipelines' tests: HTTP, SMTP and a TCP proxy.

- `RecordingHttpServer`: stdlib `http.server` in a thread; records every request and answers
  each path from a script of replies (status, body, delay).
- `RecordingSmtpServer`: an aiosmtpd `Controller` that records messages, refuses chosen
  recipients with 550 and, when given a login, requires SMTP AUTH.
- `TcpProxy`: forwards a local port to another address and can cut every open connection,
  as a broker restart or a network blip would.
- `where_secret_appears()`: every stored row or log that contains a secret.
- `LOOPBACK_CALLBACKS`: the setting that lets `http.callback` reach these servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from app.devserver.embedded_postgres import free_port
from tests.support.jobs_db import JobsDb

# These servers listen on 127.0.0.1, which `http.callback` refuses unless a setting allows
# it: a process that must reach them gets this, explicitly (docs/security.md#outbound-guard).
LOOPBACK_CALLBACKS = {"HTTP_CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32"}


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, body, and how long to wait before sending it."""

    status: int = 200
    body: str = "ok"
    delay_sec: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received: method, path, headers (names lower-cased) and body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingHttpServer:
    """A threaded HTTP server on 127.0.0.1 that records requests and plays scripted replies.

    Each path answers with its script in order; the last reply repeats. Unscripted paths
    answer 200 "ok".
    """

    requests: list[RecordedRequest] = field(default_factory=list)
    _scripts: dict[str, list[Reply]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        """The full URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer requests to `path` with `replies` in order, repeating the last one."""
        with self._lock:
            self._scripts[path] = list(replies)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The requests received for `path`, oldest first."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            script = self._scripts.get(request.path)
            if not script:
                return Reply()
            return script.pop(0) if len(script) > 1 else script[0]

    def start(self) -> RecordingHttpServer:
        """Listen on a free port and serve in a daemon thread."""
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = RecordedRequest(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length),
                )
                reply = recorder._next_reply(request)
                if reply.delay_sec and recorder._stopping.wait(reply.delay_sec):
                    return  # shutting down
                payload = reply.body.encode()
                with contextlib.suppress(OSError):  # the client may have given up waiting
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; delayed replies are abandoned."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextlib.contextmanager
def http_server() -> Iterator[RecordingHttpServer]:
    """A started RecordingHttpServer, stopped at the end of the block."""
    server = RecordingHttpServer().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP server accepted: envelope, raw content and who logged in."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: str | None


@dataclass
class _SmtpHandler:
    """aiosmtpd handler: refuse some recipients, record every accepted message."""

    refused: set[str]
    messages: list[ReceivedMail] = field(default_factory=list)

    async def handle_RCPT(  # aiosmtpd calls hooks by these names
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # aiosmtpd calls hooks by these names
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        login = session.login_data.decode() if session.authenticated else None
        self.messages.append(
            ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login)
        )
        return "250 Message accepted for delivery"


@dataclass
class RecordingSmtpServer:
    """A plain-text SMTP server on 127.0.0.1 (no TLS) that records what it accepts."""

    controller: Controller
    handler: _SmtpHandler

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.controller.port)

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every accepted message, oldest first."""
        return self.handler.messages


@contextlib.contextmanager
def smtp_server(
    *, refuse: set[str] | None = None, login: tuple[str, str] | None = None
) -> Iterator[RecordingSmtpServer]:
    """A started SMTP server; with `login` (user, password) it requires AUTH and checks it."""
    handler = _SmtpHandler(refused=set(refuse or ()))
    options: dict[str, Any] = {}
    if login is not None:

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            ok = (
                isinstance(auth_data, LoginPassword)
                and (
                    auth_data.login.decode(),
                    auth_data.password.decode(),
                )
                == login
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        # Plain-text AUTH is fine here: no TLS certificate to set up on a loopback test.
        options = {"authenticator": authenticator, "auth_required": True}
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), auth_require_tls=False, **options
    )
    controller.start()
    try:
        yield RecordingSmtpServer(controller=controller, handler=handler)
    finally:
        controller.stop()


@dataclass
class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target`; `cut()` closes every open connection."""

    target_host: str
    target_port: int
    connections: int = 0  # accepted so far
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The local port that forwards to the target."""
        assert self._server is not None, "proxy not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> TcpProxy:
        """Listen on a free port in the running event loop."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()

    def cut(self) -> None:
        """Drop every open connection, both sides, as a broker restart would."""
        for writer in list(self._writers):
            transport = writer.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


async def where_secret_appears(jobs_db: JobsDb, secret: str, logs: dict[str, str]) -> list[str]:
    """Every dl_jobs / dl_job_events row and every log (name -> text) containing `secret`."""
    places = []
    for table in ("dl_jobs", "dl_job_events"):
        rows = await jobs_db.fetch(f"SELECT t::text AS row FROM {table} t")
        places += [f"{table}: {row['row']}" for row in rows if secret in row["row"]]
    places += [f"log {name}" for name, text in logs.items() if secret in text]
    return places
