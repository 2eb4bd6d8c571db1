"""How long the lock session's locks can be trusted when the database stops answering.

Mutual exclusion rests on session advisory locks, which the server frees when it drops the
session. A worker cut off from the database (a network partition, a host that froze) cannot
learn when that happens, so the two sides keep a deadline each, and the worker's comes first:

- the worker pings an idle lock session every `ping_sec`. When no statement on it has come
  back for `deadline_sec` (measured from when the last good one was sent), the locks are in
  doubt and every job holding one is stopped;
- the server drops a silent lock session only after `server_drop_sec` without hearing from
  it (TCP keepalives and tcp_user_timeout, set for that session alone), which is later.

So by the time another worker can take a lock_key, the job that held it has been stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_DEADLINE_SEC = 5.0  # event loop pauses under load must not stop healthy jobs
PINGS_PER_DEADLINE = 3
KEEPALIVE_INTERVAL_SEC = 1
KEEPALIVE_COUNT = 3
# Between the worker's deadline and the earliest drop by the server.
SERVER_MARGIN_SEC = 2


@dataclass(frozen=True)
class LockLiveness:
    """The lock session's ping period and the two deadlines."""

    ping_sec: float
    deadline_sec: float
    keepalive_idle_sec: int

    @classmethod
    def for_heartbeat(cls, heartbeat_sec: float) -> LockLiveness:
        """Ping as often as attempts heartbeat; in doubt after three missed pings (at least 5 s)."""
        deadline = max(PINGS_PER_DEADLINE * heartbeat_sec, MIN_DEADLINE_SEC)
        return cls(
            ping_sec=heartbeat_sec,
            deadline_sec=deadline,
            keepalive_idle_sec=math.ceil(deadline) + SERVER_MARGIN_SEC,
        )

    @property
    def server_drop_sec(self) -> int:
        """The server keeps a silent session at least this long after it last heard from it."""
        return self.keepalive_idle_sec + KEEPALIVE_INTERVAL_SEC * KEEPALIVE_COUNT

    def server_settings(self) -> dict[str, str]:
        """Session settings that make the server drop this session once it falls silent.

        Keepalives cover an idle session; tcp_user_timeout covers one whose reply is stuck
        unacknowledged (it overrides the keepalive count on Linux). Both are per session.
        """
        return {
            "tcp_keepalives_idle": str(self.keepalive_idle_sec),
            "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL_SEC),
            "tcp_keepalives_count": str(KEEPALIVE_COUNT),
            "tcp_user_timeout": str(self.server_drop_sec * 1000),
        }
