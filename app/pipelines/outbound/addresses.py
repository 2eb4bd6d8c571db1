"""What kind of IP address a destination is: public, or one a job may not reach by default."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_THIS_NETWORK = ip_network("0.0.0.0/8")
_SHARED = ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598: neither private nor global
_UNIQUE_LOCAL = ip_network("fc00::/7")
_NAT64 = ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
_IPV4_COMPATIBLE = ip_network("::/96")  # deprecated ::a.b.c.d


def embedded_ipv4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, NAT64, compatible), and the form."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        form = "NAT64" if address in _NAT64 else "IPv4-compatible"
        return form, IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_kind(address: IPAddress) -> str | None:
    """Why `address` is not a public one ("a loopback address", …), or None when it is.

    The standard library's own flags, checked in an order that names the most telling kind;
    an IPv6 form that carries an IPv4 address is judged by that address too (Python 3.11's
    flags do not look inside it).
    """
    if isinstance(address, IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            form, inner = embedded
            kind = non_public_kind(inner)
            if kind is not None:
                return f"the {form} form of {inner}, {kind}"
            if form in ("IPv4-mapped", "NAT64"):
                # These reach exactly the IPv4 address (DNS64 networks resolve public sites
                # to NAT64 forms): a public one is public.
                return None
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        # 169.254.169.254 and fd00:ec2::254 are where clouds serve instance credentials.
        return "a link-local address (cloud metadata lives there)"
    if isinstance(address, IPv6Address) and address in _UNIQUE_LOCAL:
        return "a unique-local address"
    if isinstance(address, IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, IPv4Address) and address in _THIS_NETWORK:
        return "an address of 'this network' (0.0.0.0/8)"
    if isinstance(address, IPv4Address) and address in _SHARED:
        return "a shared address (100.64.0.0/10, carrier-grade NAT)"
    if address.is_reserved:  # before is_private, which Python 3.11 also says of 240.0.0.0/4
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a non-public address"
    return None


def in_networks(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether `address`, or the IPv4 address an IPv6 form of it carries, is in `networks`."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded[1])
    return any(candidate in network for candidate in candidates for network in networks)
