"""Built-in `http.callback`: send `data` to `url` over HTTP; 5xx and network errors retry."""

from __future__ import annotations

import asyncio
import functools
import ssl
from typing import Annotated, Any, Literal

import httpx
import msgspec

from app.observability.tracing import current_trace_context
from app.pipelines.errors import DestinationRefusedError, PermanentError
from app.pipelines.outbound.guard import (
    OutboundPolicy,
    UnresolvableHostError,
    reachable_addresses,
)
from app.pipelines.outbound.transport import GuardedTransport
from app.pipelines.registry import pipeline
from app.settings import Settings, get_settings

BODY_EXCERPT_CHARS = 500
# Statuses that say "later" rather than "never", although they are 4xx.
RETRYABLE_4XX = frozenset({408, 425, 429})

HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=256)]
# No CR/LF: a header value must not be able to start another header.
HeaderValue = Annotated[str, msgspec.Meta(pattern=r"^[^\r\n\x00]*$", max_length=8192)]


class HttpCallbackArgs(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Args of `http.callback`; unknown fields are rejected at trigger time."""

    url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/?#]+([/?#]\S*)?$", max_length=8192)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    data: dict[str, Any] | str | None = None
    headers: dict[HeaderName, HeaderValue] = {}
    timeout_sec: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    credentials: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    # Filled in by the service when the job is a batch's completion callback
    # (docs/batches.md): sent in the JSON body under `batch`.
    batch: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into a ValidationError, so trigger answers 400.
        try:
            url = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"url is not a valid URL: {exc}") from None
        if not url.host:
            raise ValueError("url has no host")
        if url.port is not None and not 0 < url.port < 65536:
            raise ValueError(f"url has an invalid port {url.port}")


class CallbackError(Exception):
    """The callback did not succeed this time (5xx, timeout, network error): retried."""


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process: loading the CA bundle per job is slow."""
    return ssl.create_default_context()


def _credential_headers(args: HttpCallbackArgs, settings: Settings) -> dict[str, str]:
    """The header set the job names, if it is bound to the job's URL.

    Raises DestinationRefusedError for a set that does not exist or may not go to this URL.
    """
    if args.credentials is None:
        return {}
    sets = settings.http_callback_credentials_json
    chosen = sets.get(args.credentials)
    if chosen is None:
        raise DestinationRefusedError(
            f"unknown credentials {args.credentials!r}: not in HTTP_CALLBACK_CREDENTIALS_JSON"
        )
    if not any(prefix.matches(args.url) for prefix in chosen.prefixes):
        # The prefixes stay unnamed: they are the operator's configuration, not the client's.
        raise DestinationRefusedError(
            f"credentials {args.credentials!r} may not be sent to this url: it is under none"
            " of the URL prefixes HTTP_CALLBACK_CREDENTIALS_JSON binds them to"
        )
    return {header: value.get_secret_value() for header, value in chosen.headers.items()}


async def check_callback_destination(args: HttpCallbackArgs, settings: Settings) -> None:
    """At trigger time: the credentials are bound to the URL and its host may be reached.

    A host that does not resolve now passes: the worker resolves it again before it
    connects, and refuses it then if it must.
    """
    _credential_headers(args, settings)
    url = httpx.URL(args.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        await reachable_addresses(url.host, port, OutboundPolicy.for_http_callback(settings))
    except UnresolvableHostError:
        return


def _redact(text: str, secrets: dict[str, str]) -> str:
    """`text` with every credential value replaced, in case a library quoted one."""
    for value in secrets.values():
        if value:
            text = text.replace(value, "***")
    return text


def _request_kwargs(args: HttpCallbackArgs, secrets: dict[str, str]) -> dict[str, Any]:
    """Headers and body for httpx: credentials override the job's headers of the same name.

    While tracing is on, the receiver gets the attempt's span as W3C `traceparent` (and
    `tracestate`), so its own spans join the job's trace; a traceparent the job sets wins.
    """
    headers = httpx.Headers(args.headers)
    headers.update(secrets)
    trace = current_trace_context()
    if trace is not None and "traceparent" not in headers:
        headers["traceparent"] = trace.traceparent
        if trace.tracestate:
            headers["tracestate"] = trace.tracestate
    if isinstance(args.data, str):
        headers.setdefault("content-type", "text/plain; charset=utf-8")
        return {"headers": headers, "content": args.data.encode()}
    data = args.data if args.batch is None else {**(args.data or {}), "batch": args.batch}
    if data is not None:
        return {"headers": headers, "json": data}  # keeps a content-type the job set
    return {"headers": headers}


async def _excerpt(response: httpx.Response) -> str:
    """At most BODY_EXCERPT_CHARS of the body, reading no more than that from the wire."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_EXCERPT_CHARS * 4:  # UTF-8: at most 4 bytes a character
            break
    text = b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")
    return text[:BODY_EXCERPT_CHARS]


@pipeline("http.callback", args=HttpCallbackArgs, check_destination=check_callback_destination)
async def http_callback(args: HttpCallbackArgs) -> dict[str, Any]:
    """Send the request; 2xx succeeds, 4xx fails at once, 5xx and network errors retry."""
    settings = get_settings()
    secrets = _credential_headers(args, settings)
    target = f"{args.method} {args.url}"
    try:
        # httpx's timeout bounds each phase; asyncio's bounds the whole exchange.
        async with asyncio.timeout(args.timeout_sec):
            status, body, location = await _send(args, secrets, settings)
    except DestinationRefusedError as exc:
        # Refused before connecting: one message whatever listens there, and no body.
        raise DestinationRefusedError(f"{target}: refused before connecting: {exc}") from None
    except (TimeoutError, httpx.TimeoutException):
        raise CallbackError(f"{target}: no answer within {args.timeout_sec:g}s") from None
    except (
        httpx.UnsupportedProtocol,
        httpx.InvalidURL,
        httpx.LocalProtocolError,
        ValueError,  # e.g. a credential header value that is not ASCII
    ) as exc:
        # Our own request is malformed: sending it again cannot help.
        message = _redact(f"{type(exc).__name__}: {exc}", secrets)
        raise PermanentError(f"{target}: cannot send the request: {message}") from None
    except httpx.HTTPError as exc:
        message = _redact(f"{type(exc).__name__}: {exc}", secrets)
        raise CallbackError(f"{target}: request failed: {message}") from None
    if 200 <= status < 300:
        return {"status_code": status}
    if 300 <= status < 400:
        # Redirects are not followed: that could hand credential headers to another host.
        where = location[:BODY_EXCERPT_CHARS]
        raise PermanentError(f"{target} answered HTTP {status}, a redirect to {where!r}")
    message = f"{target} answered HTTP {status}: {_redact(body, secrets)}"
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        raise PermanentError(message)
    raise CallbackError(message)


async def _send(
    args: HttpCallbackArgs, secrets: dict[str, str], settings: Settings
) -> tuple[int, str, str]:
    """Status, a body excerpt (only when not 2xx) and the Location header of the answer.

    Every connection goes through the outbound guard; redirects are not followed.
    """
    transport = GuardedTransport(OutboundPolicy.for_http_callback(settings), _ssl_context())
    async with (
        httpx.AsyncClient(
            timeout=args.timeout_sec, transport=transport, follow_redirects=False
        ) as client,
        client.stream(args.method, args.url, **_request_kwargs(args, secrets)) as response,
    ):
        status = response.status_code
        body = "" if 200 <= status < 300 else await _excerpt(response)
        return status, body, response.headers.get("location", "")
