"""Leader election among the workers of one database: one session advisory lock.

The lock lives on a session the worker keeps anyway: pgqueuer's connection (direct, never
through a pooler, since a session lock must stay on one server session), reached through
pgqueuer's driver, which sends one statement at a time. A worker that does not lead tries
the lock there once a period: one statement, and no connection of its own.

A leader whose process hangs (SIGSTOP, a blocked event loop) keeps that session open, and
so the lock: while it leads, the session is given an idle timeout, so the server closes it
and frees the lock for another worker; a live leader proves itself (`confirm`) more often.
"""

from __future__ import annotations

from pgqueuer.ports.driver import Driver

from app.db import locks

# Any fixed number; every worker of one database competes for it.
LEADER_LOCK_ID = 0x646C5F6C65616472  # "dl_leadr"


async def stand(session: Driver, idle_ms: int) -> bool:
    """Take the leader lock on `session` if nobody holds it; whether it was taken."""
    if not await locks.try_lock_id(session, LEADER_LOCK_ID):
        return False
    # Set now, not at connect: a server without the setting must still elect a leader, and
    # a pooler refuses startup parameters it does not know.
    await locks.limit_idle_session(session, idle_ms)
    return True


async def confirm(session: Driver) -> None:
    """Prove the leader's session is alive (and keep it from its idle timeout)."""
    await locks.ping(session)


async def step_down(session: Driver) -> None:
    """Give the lock back and lift the idle timeout; the session stays open for pgqueuer."""
    await locks.unlock_id(session, LEADER_LOCK_ID)
    await locks.limit_idle_session(session, 0)
