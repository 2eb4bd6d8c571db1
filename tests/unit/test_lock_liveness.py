"""worker.lock_liveness: the worker gives its locks up before the server can free them."""

from __future__ import annotations

import pytest

from worker.lock_liveness import LockLiveness


@pytest.mark.parametrize("heartbeat_sec", [0.1, 0.5, 1, 10, 60, 3600])
def test_the_worker_stops_before_the_server_drops_the_session(heartbeat_sec: float) -> None:
    liveness = LockLiveness.for_heartbeat(heartbeat_sec)
    assert liveness.deadline_sec >= 3 * liveness.ping_sec, "three pings may go unanswered"
    assert liveness.deadline_sec >= 5, "short event-loop pauses do not stop healthy jobs"
    assert liveness.server_drop_sec >= liveness.deadline_sec + 5


def test_the_server_settings_bound_a_silent_session() -> None:
    liveness = LockLiveness.for_heartbeat(10)
    assert liveness.server_settings() == {
        "tcp_keepalives_idle": "32",
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "35000",
    }
