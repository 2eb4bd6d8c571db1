"""The bodies of /health, /ready and /info."""

from __future__ import annotations

import msgspec


class Health(msgspec.Struct):
    """Liveness: the process answers."""

    status: str = "healthy"


class Readiness(msgspec.Struct):
    """Readiness: the database answers."""

    status: str
    database: str


class Info(msgspec.Struct, kw_only=True):
    """What is running, and since when."""

    service: str
    version: str
    environment: str
    uptime_sec: float
