"""Resolve a host and refuse it unless every address it resolves to may be reached."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from ipaddress import ip_address

from app.pipelines.errors import DestinationRefusedError
from app.pipelines.outbound.addresses import IPAddress, IPNetwork, in_networks, non_public_kind
from app.settings import Settings

ALLOW_SETTINGS = "HTTP_CALLBACK_ALLOWED_NETWORKS or HTTP_CALLBACK_ALLOWED_HOSTS"
# getaddrinfo runs in the loop's thread pool; a slow resolver must not hold a trigger (or
# that pool) for its own timeouts, so a lookup this slow counts as not resolving now.
RESOLVE_TIMEOUT_SEC = 5.0


@dataclass(frozen=True)
class OutboundPolicy:
    """The non-public networks and host names the settings allow despite the guard."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()

    @classmethod
    def for_http_callback(cls, settings: Settings) -> OutboundPolicy:
        """The policy of `http.callback` from HTTP_CALLBACK_ALLOWED_*."""
        return cls(
            tuple(settings.http_callback_allowed_networks),
            tuple(settings.http_callback_allowed_hosts),
        )

    def host_allowed(self, host: str) -> bool:
        """Whether `host` is a name the operator trusts whatever it resolves to."""
        name = host.lower().rstrip(".")
        return any(
            name == allowed or (allowed.startswith("*.") and name.endswith(allowed[1:]))
            for allowed in self.hosts
        )

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why `host`, resolved to `address`, may not be reached, or None when it may."""
        kind = non_public_kind(address)
        if kind is None or in_networks(address, self.networks):
            return None
        where = (
            f"{host} is {kind}"
            if _literal(host) == address
            else f"{host} resolves to {address}, {kind}"
        )
        return f"url host {where}; allow it with {ALLOW_SETTINGS}"


def _literal(host: str) -> IPAddress | None:
    """`host` as an address when it is one spelled the standard way (not `127.1`)."""
    try:
        return ip_address(host)
    except ValueError:
        return None


class UnresolvableHostError(Exception):
    """The host name did not resolve (now): the worker tries again later."""


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, through the event loop's resolver (never blocking it).

    The system resolver also reads the short, decimal, octal and hex IPv4 forms
    (`127.1`, `2130706433`, `0x7f.1`) as the addresses they stand for.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SEC):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise UnresolvableHostError(f"cannot resolve {host}: no answer in time") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableHostError(f"cannot resolve {host}: {exc}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def reachable_addresses(host: str, port: int, policy: OutboundPolicy) -> list[IPAddress]:
    """The addresses of `host` to connect to; DestinationRefusedError if any is not allowed.

    One refused address refuses the host: a name that mixes public and internal addresses
    is as suspect as an internal one. The message names the host, the address and its kind,
    and is the same whether anything listens there: nothing is contacted.
    """
    addresses = await resolve(host, port)
    if policy.host_allowed(host):
        return addresses
    for address in addresses:
        reason = policy.refusal(host, address)
        if reason is not None:
            raise DestinationRefusedError(reason)
    return addresses
