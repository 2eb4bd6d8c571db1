"""Whether a TCP port can be listened on, so a busy one is one line naming its setting.

Checked before the process that would bind it starts: uvicorn's and PostgreSQL's own
failures come as a traceback or a log tail, after other lines that said all was well.
"""

from __future__ import annotations

import errno
import socket


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on (`host`, `port`).

    Binds as the servers do (SO_REUSEADDR), so a connection still in TIME_WAIT does not
    count as busy; only another listener does.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # the server will report an unknown host itself
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return True
    return False


def accepts_connections(host: str, port: int) -> bool:
    """Whether a TCP connection to (`host`, `port`) is accepted right now."""
    # A server bound to every interface is reached through loopback.
    wildcard_loopback = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104
    target = wildcard_loopback.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False
