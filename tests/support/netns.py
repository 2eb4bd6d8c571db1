"""A simulated separate host for fault tests: a network namespace behind a cuttable link.

The namespace is joined to the root namespace by a veth pair on a /30 of its own, so a
process started with `NetworkNamespace.command` reaches the root namespace's servers over a
real (virtual) wire that the test can cut and restore, as in a network partition.
Needs root and iproute2 (`ip`, `tc`); `namespaces_available` says whether they work here.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Test runs may have a PATH without the sbin directories, where iproute2 lives.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_POOL = ipaddress.IPv4Network("10.231.0.0/16")
# Classic BPF for a direct-action tc filter: "if skb->protocol is IPv4 return TC_ACT_SHOT (2),
# else TC_ACT_UNSPEC (-1)". Written as bytecode because this kernel has neither netem, gact nor
# matchall, and cls_bpf accepts classic BPF without a compiler. ARP is let through on purpose:
# were it dropped too, the neighbour entry would fail (~3 s, measured) and the kernel would
# report EHOSTUNREACH to the local TCP sockets (aborting connects) - not a silent partition.
_DROP_IPV4 = "4,40 0 0 4294963200,21 0 1 2048,6 0 0 2,6 0 0 4294967295"


def _tool(name: str) -> str:
    return shutil.which(name, path=_SEARCH_PATH) or name


def _run(argv: list[str]) -> None:
    """Run a command, raising with its stderr (CalledProcessError alone hides it)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


@dataclass
class NetworkNamespace:
    """A namespace ("host") reached from the root namespace over a veth pair."""

    name: str
    host_address: str
    inner_address: str
    network: str
    _cut: bool = field(default=False, init=False, repr=False)

    @property
    def host_device(self) -> str:
        """The veth end in the root namespace (the peer inside is `inner_device`)."""
        return f"{self.name}-h"

    @property
    def inner_device(self) -> str:
        """The veth end inside the namespace."""
        return f"{self.name}-i"

    @property
    def is_cut(self) -> bool:
        """Whether the link currently drops every packet."""
        return self._cut

    def command(self, argv: list[str]) -> list[str]:
        """`argv` prefixed so that it runs inside the namespace."""
        return [_tool("ip"), "netns", "exec", self.name, *argv]

    def _both_ends(self, tc_args: list[str]) -> None:
        _run([_tool("tc"), *tc_args[:2], "dev", self.host_device, *tc_args[2:]])
        _run(self.command([_tool("tc"), *tc_args[:2], "dev", self.inner_device, *tc_args[2:]]))

    def cut(self) -> None:
        """Silently drop every IPv4 packet both ways, as a partition does.

        The drop sits on the *ingress* of each veth end: the sender's transmit succeeds and the
        packet vanishes on arrival, so no side gets an error, ICMP or RST; TCP just retransmits,
        and established connections outlive the cut (unless their own timeouts expire).
        Cutting within a delayed-ACK interval (~40 ms) of the last exchange strands that ACK:
        the server then holds unacknowledged data, and TCP keepalives never fire while it
        retransmits (only tcp_user_timeout or the retransmission limit end the session).
        """
        if self._cut:
            return
        self._both_ends(["qdisc", "add", "clsact"])
        self._cut = True
        self._both_ends(["filter", "add", "ingress", "bpf", "da", "bytecode", _DROP_IPV4])

    def restore(self) -> None:
        """Let packets flow again; surviving TCP connections resume on their next retransmit."""
        if not self._cut:
            return
        # Deleting the clsact qdisc deletes its filters with it.
        self._both_ends(["qdisc", "del", "clsact"])
        self._cut = False


def _free_network() -> ipaddress.IPv4Network:
    """A random /30 of the pool that no root-namespace address falls in (others' runs too)."""
    shown = subprocess.run(
        [_tool("ip"), "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    used = {
        ipaddress.IPv4Interface(word).ip for word in shown.split() if word.startswith("10.231.")
    }
    candidates = list(_POOL.subnets(new_prefix=30))
    for network in random.sample(candidates, len(candidates)):
        if not any(address in network for address in used):
            return network
    raise RuntimeError(f"no free /30 left in {_POOL}")


@contextmanager
def network_namespace() -> Iterator[NetworkNamespace]:
    """Create a namespace linked to the root namespace; delete it all on exit."""
    network = _free_network()
    host, inner = (str(address) for address in network.hosts())
    # Short: the veth names derive from it and interface names are capped at 15 characters.
    ns = NetworkNamespace(f"dlf-{secrets.token_hex(3)}", host, inner, str(network))
    ip = _tool("ip")
    try:
        _run([ip, "netns", "add", ns.name])
        veth = ["type", "veth", "peer", "name", ns.inner_device, "netns", ns.name]
        _run([ip, "link", "add", ns.host_device, *veth])
        _run([ip, "addr", "add", f"{host}/30", "dev", ns.host_device])
        _run([ip, "link", "set", ns.host_device, "up"])
        _run(ns.command([ip, "addr", "add", f"{inner}/30", "dev", ns.inner_device]))
        _run(ns.command([ip, "link", "set", ns.inner_device, "up"]))
        _run(ns.command([ip, "link", "set", "lo", "up"]))
        yield ns
    finally:
        # The namespace's teardown frees the veth only asynchronously; deleting the link first
        # (both ends go together) leaves nothing behind by the time the block exits.
        for argv in ([ip, "link", "del", ns.host_device], [ip, "netns", "del", ns.name]):
            subprocess.run(argv, capture_output=True, check=False)


@functools.cache
def namespaces_available() -> str | None:
    """None if namespaces can be made and cut here, else why not (for a skip message)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool, path=_SEARCH_PATH) is None:
            return f"`{tool}` (iproute2) is not installed"
    try:
        with network_namespace() as ns:
            ns.cut()
            ns.restore()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        return f"cannot create or cut a network namespace: {error}"
    return None
