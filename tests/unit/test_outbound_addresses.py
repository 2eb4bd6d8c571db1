"""The outbound guard's address checks: every spelling of an internal address is refused."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from app.pipelines.errors import DestinationRefusedError
from app.pipelines.outbound.addresses import non_public_kind
from app.pipelines.outbound.guard import OutboundPolicy, reachable_addresses

# (host as a URL carries it, the address it stands for, words the refusal must contain).
# Numeric hosts only: the system resolver reads them without asking any DNS server.
REFUSED = [
    ("127.0.0.1", "127.0.0.1", "is a loopback address"),
    ("2130706433", "127.0.0.1", "2130706433 resolves to 127.0.0.1, a loopback address"),
    ("0x7f.1", "127.0.0.1", "0x7f.1 resolves to 127.0.0.1, a loopback address"),
    ("017700000001", "127.0.0.1", "resolves to 127.0.0.1, a loopback address"),
    ("127.1", "127.0.0.1", "127.1 resolves to 127.0.0.1, a loopback address"),
    ("::1", "::1", "::1 is a loopback address"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1", "the IPv4-mapped form of 127.0.0.1, a loopback"),
    ("::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "IPv4-mapped form of 169.254.169.254"),
    ("2002:7f00:1::", "2002:7f00:1::", "the 6to4 form of 127.0.0.1, a loopback address"),
    ("64:ff9b::a00:1", "64:ff9b::a00:1", "the NAT64 form of 10.0.0.1, a private address"),
    ("169.254.169.254", "169.254.169.254", "is a link-local address (cloud metadata"),
    ("fe80::1", "fe80::1", "fe80::1 is a link-local address"),
    ("fc00::1", "fc00::1", "fc00::1 is a unique-local address"),
    ("fd12:3456::1", "fd12:3456::1", "is a unique-local address"),
    ("0.0.0.0", "0.0.0.0", "0.0.0.0 is the unspecified address"),
    ("::", "::", ":: is the unspecified address"),
    ("0.1.2.3", "0.1.2.3", "an address of 'this network'"),
    ("224.0.0.1", "224.0.0.1", "224.0.0.1 is a multicast address"),
    ("ff02::1", "ff02::1", "ff02::1 is a multicast address"),
    ("10.1.2.3", "10.1.2.3", "10.1.2.3 is a private address"),
    ("172.16.0.1", "172.16.0.1", "is a private address"),
    ("192.168.1.1", "192.168.1.1", "is a private address"),
    ("100.64.0.1", "100.64.0.1", "is a shared address (100.64.0.0/10"),
    ("240.0.0.1", "240.0.0.1", "is a reserved address"),
    ("255.255.255.255", "255.255.255.255", "is a reserved address"),
    ("::127.0.0.1", "::7f00:1", "the IPv4-compatible form of 127.0.0.1"),
]


@pytest.mark.parametrize(("host", "address", "words"), REFUSED)
async def test_outbound_guard_refuses_every_form_of_an_internal_address(
    host: str, address: str, words: str
) -> None:
    with pytest.raises(DestinationRefusedError) as caught:
        await reachable_addresses(host, 80, OutboundPolicy())

    message = str(caught.value)
    assert words in message
    assert address in message or host in message
    assert message.endswith(
        "; allow it with HTTP_CALLBACK_ALLOWED_NETWORKS or HTTP_CALLBACK_ALLOWED_HOSTS"
    )


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "93.184.215.14"])
async def test_outbound_guard_lets_a_public_address_through(host: str) -> None:
    assert await reachable_addresses(host, 443, OutboundPolicy()) == [ip_address(host)]


def test_outbound_guard_names_public_addresses_public() -> None:
    assert non_public_kind(ip_address("8.8.8.8")) is None
    assert non_public_kind(ip_address("::ffff:8.8.8.8")) is None
    assert non_public_kind(ip_address("64:ff9b::808:808")) is None
    assert non_public_kind(ip_address("2a00:1450:4001::1")) is None


async def test_outbound_guard_allows_listed_networks_and_only_those() -> None:
    policy = OutboundPolicy(networks=(ip_network("127.0.0.1/32"), ip_network("10.1.0.0/16")))

    assert await reachable_addresses("127.0.0.1", 80, policy) == [ip_address("127.0.0.1")]
    assert await reachable_addresses("2130706433", 80, policy) == [ip_address("127.0.0.1")]
    mapped = await reachable_addresses("::ffff:127.0.0.1", 80, policy)
    assert mapped == [ip_address("::ffff:127.0.0.1")]
    assert await reachable_addresses("10.1.200.3", 80, policy) == [ip_address("10.1.200.3")]
    for outside in ("127.0.0.2", "10.2.0.1", "169.254.169.254", "::1"):
        with pytest.raises(DestinationRefusedError):
            await reachable_addresses(outside, 80, policy)


def test_outbound_guard_allows_listed_host_names_exactly_or_below_a_wildcard() -> None:
    policy = OutboundPolicy(hosts=("hooks.internal", "*.svc.example"))

    assert policy.host_allowed("hooks.internal")
    assert policy.host_allowed("HOOKS.internal.")
    assert policy.host_allowed("a.svc.example")
    assert policy.host_allowed("b.a.svc.example")
    assert not policy.host_allowed("svc.example")
    assert not policy.host_allowed("evil-svc.example")
    assert not policy.host_allowed("hooks.internal.evil.com")
    assert not policy.host_allowed("xhooks.internal")


async def test_outbound_guard_reaches_an_allowed_host_name_whatever_it_resolves_to() -> None:
    allowed = OutboundPolicy(hosts=("localhost",))

    addresses = await reachable_addresses("localhost", 80, allowed)

    assert addresses
    assert all(address.is_loopback for address in addresses)
    with pytest.raises(DestinationRefusedError, match="localhost resolves to"):
        await reachable_addresses("localhost", 80, OutboundPolicy())
