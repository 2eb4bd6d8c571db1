"""An httpx transport that connects only to addresses the outbound guard checked."""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import httpcore
import httpx

from app.pipelines.errors import DestinationRefusedError
from app.pipelines.outbound.guard import OutboundPolicy, UnresolvableHostError, reachable_addresses


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host itself, checks every address, and connects to a checked one.

    Connecting to the very address that was checked leaves DNS no second answer to give
    (no rebinding window). httpcore still sends the original host name as TLS SNI and in
    the Host header, so certificates are verified against the name, not the address.
    """

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A stream to the first checked address of `host` that accepts the connection."""
        try:
            addresses = await reachable_addresses(host, port, self._policy)
        except UnresolvableHostError as exc:
            raise httpcore.ConnectError(str(exc)) from None  # httpx: a retried ConnectError
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: a job names hosts, not sockets on the worker's machine."""
        raise DestinationRefusedError("unix sockets are not reachable from a job")

    async def sleep(self, seconds: float) -> None:
        """Sleep as the inner backend does."""
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its error mapping, pooling) over the guarded network backend."""

    def __init__(self, policy: OutboundPolicy, ssl_context: ssl.SSLContext) -> None:
        # No proxies from the environment: a proxy would resolve the host, not the guard.
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx offers no hook for httpcore's network backend; the pool it built is replaced
        # by one that connects through the guard (a test fails if this stops working).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=GuardedNetworkBackend(policy)
        )
