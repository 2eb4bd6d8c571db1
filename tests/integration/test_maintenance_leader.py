"""The maintenance leader on a real database: election, liveness, terms of its services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import asyncpg
import pytest
from pgqueuer.db import AsyncpgDriver
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.leadership import LEADER_LOCK_ID
from tests.support.waiting import wait_until
from worker.maintenance.leader import LeaderConfig, MaintenanceLeader
from worker.maintenance.retention import Retention, RetentionConfig
from worker.maintenance.service import MaintenanceService


@dataclass
class Counter(MaintenanceService):
    """Records the term of each pass (a term begins with a first wait); pass `fail_on` raises."""

    wait_sec: float = 0.02
    fail_on: int | None = None
    terms: int = 0
    passes: list[int] = field(default_factory=list)

    def first_wait_sec(self) -> float:
        self.terms += 1
        return 0.0

    async def pass_then_wait(self) -> float:
        self.passes.append(self.terms)
        if len(self.passes) == self.fail_on:
            raise RuntimeError(f"pass {len(self.passes)} failed")
        return self.wait_sec


class Leaders:
    """Leaders on one test database, stopped (each resigns) at the end of the test.

    Each stands on a session of its own, as each worker's leader stands on its pgqueuer
    connection, reached through pgqueuer's driver.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.built: list[MaintenanceLeader] = []
        self.running: list[asyncio.Task[None]] = []
        self.sessions: dict[int, asyncpg.Connection] = {}

    async def build(
        self, *services: MaintenanceService, period_sec: float = 0.2
    ) -> MaintenanceLeader:
        """A leader of `services` electing every `period_sec`."""
        connection = await asyncpg.connect(self.dsn)
        leader = MaintenanceLeader(
            AsyncpgDriver(connection), list(services), LeaderConfig(period_sec=period_sec)
        )
        self.built.append(leader)
        self.sessions[id(leader)] = connection
        return leader

    def session_pid(self, leader: MaintenanceLeader) -> int:
        """The server pid of the session `leader` stands on."""
        return self.sessions[id(leader)].get_server_pid()

    def start(self, leader: MaintenanceLeader) -> asyncio.Task[None]:
        """Run the leader's loop in the background."""
        task = asyncio.create_task(leader.run())
        self.running.append(task)
        return task

    async def close(self) -> None:
        """Stop every loop, then resign whoever still leads."""
        for leader in self.built:
            leader.stopped.set()
        await asyncio.gather(*self.running, return_exceptions=True)
        for leader in self.built:
            await leader.resign()
        for connection in self.sessions.values():
            connection.terminate()


@pytest.fixture
async def leaders(database_dsn: str) -> AsyncIterator[Leaders]:
    """Builds and runs leaders on this test's database."""
    built = Leaders(database_dsn)
    yield built
    await built.close()


async def lock_holders(db: asyncpg.Connection) -> list[int]:
    """Server pids of the sessions holding the leader lock."""
    rows = await db.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((classid::bigint << 32) | objid::bigint) = $1",
        LEADER_LOCK_ID,
    )
    return [row["pid"] for row in rows]


async def test_leader_election_one_session_holds_the_lock_with_an_idle_timeout(
    leaders: Leaders, db: asyncpg.Connection
) -> None:
    first, second = await leaders.build(period_sec=10), await leaders.build()

    assert await first.elect()
    assert not await second.elect()
    assert first.is_leader
    assert not second.is_leader
    assert await lock_holders(db) == [leaders.session_pid(first)]
    # Three periods: a hung leader's session is closed by the server, and the lock freed.
    assert await first.session.fetch("SHOW idle_session_timeout") == [
        {"idle_session_timeout": "30s"}
    ]
    assert await first.elect()  # a leader stays leader

    await first.resign()

    # The lock is given back and the timeout lifted; the session stays open (pgqueuer's).
    assert await lock_holders(db) == []
    assert await first.session.fetch("SHOW idle_session_timeout") == [{"idle_session_timeout": "0"}]
    assert await second.elect()


async def test_leader_that_stops_pinging_loses_the_lock_to_the_idle_timeout(
    leaders: Leaders, caplog: pytest.LogCaptureFixture
) -> None:
    hung, other = await leaders.build(period_sec=0.5), await leaders.build()
    assert await hung.elect()

    # As a frozen process would, `hung` sends nothing: after 2 s the server closes it.
    await wait_until(other.elect, timeout=10, what="the other worker to lead")
    with caplog.at_level(logging.WARNING, logger="worker.leader"):
        assert not await hung.elect()

    assert "lost maintenance leadership: the leader connection was closed" in caplog.messages


async def test_leader_runs_its_services_only_while_it_holds_the_lock(
    leaders: Leaders,
) -> None:
    mine, theirs = Counter(), Counter()
    leader, other = await leaders.build(mine), await leaders.build(theirs)
    leading = leaders.start(leader)
    await wait_until(lambda: mine.passes, timeout=10, what="the first term's first pass")
    waiting = leaders.start(other)
    # Long enough for `other` to stand in several elections (one every 0.2 s).
    seen = len(mine.passes)
    await wait_until(lambda: len(mine.passes) >= seen + 30, timeout=10, what="more passes")

    assert theirs.passes == []

    leader.stopped.set()
    await leading
    stopped_at = len(mine.passes)
    await wait_until(lambda: theirs.passes, timeout=10, what="the other worker's term")

    assert len(mine.passes) == stopped_at  # the services stopped with the resignation
    assert (mine.terms, theirs.terms) == (1, 1)
    other.stopped.set()
    await waiting


async def test_leader_resigns_when_a_service_fails_and_the_next_term_starts_with_a_pass(
    leaders: Leaders,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, healthy = Counter(wait_sec=3600, fail_on=1), Counter(wait_sec=3600)
    leader = await leaders.build(failing, healthy)
    with caplog.at_level(logging.WARNING, logger="worker.leader"):
        task = leaders.start(leader)
        await wait_until(lambda: 2 in healthy.passes, timeout=10, what="a second term's pass")
        await wait_until(lambda: 2 in failing.passes, timeout=10, what="a second term's pass")

    assert "maintenance failed; resigning the leadership" in caplog.messages
    # Each service's pass of the second term was its first, though their periods are an hour.
    assert failing.passes == [1, 2]
    assert healthy.passes[-1] == 2
    assert healthy.passes.count(2) == 1
    assert await lock_holders(db) == [leaders.session_pid(leader)]
    leader.stopped.set()
    await task
    assert await lock_holders(db) == []


async def test_leader_keeps_its_term_when_a_retention_pass_fails(
    leaders: Leaders, caplog: pytest.LogCaptureFixture
) -> None:
    def session() -> Any:
        raise ConnectionRefusedError("database down")

    broken = cast(async_sessionmaker[AsyncSession], session)
    retention = Retention(broken, RetentionConfig(timedelta(days=7), period_sec=0.05))
    other = Counter()
    leader = await leaders.build(retention, other)
    with caplog.at_level(logging.WARNING):
        task = leaders.start(leader)
        await wait_until(
            lambda: caplog.messages.count("retention pass failed; will retry") >= 3,
            timeout=10,
            what="three failed retention passes",
        )

    assert leader.is_leader
    assert other.terms == 1
    assert "maintenance failed; resigning the leadership" not in caplog.messages
    leader.stopped.set()
    await task


async def test_leader_whose_session_is_closed_stops_its_services_for_a_leader_with_a_session(
    leaders: Leaders, db: asyncpg.Connection
) -> None:
    service, successor = Counter(wait_sec=3600), Counter(wait_sec=3600)
    leader = await leaders.build(service)
    task = leaders.start(leader)
    await wait_until(lambda: service.passes == [1], timeout=10, what="the first pass")
    other = await leaders.build(successor)
    waiting = leaders.start(other)

    # The server closes the leader's session (a restart, an idle timeout): the lock goes
    # with it. The worker's run then restarts with a new session; here, `other` has one.
    await db.execute("SELECT pg_terminate_backend($1)", leaders.session_pid(leader))

    await wait_until(lambda: successor.passes == [1], timeout=10, what="the successor's term")
    # The old leader hears of it at its next election (within a period).
    await wait_until(lambda: not leader.is_leader, timeout=10, what="the old leader to step down")
    assert service.passes == [1]  # its services stopped with the session
    assert await lock_holders(db) == [leaders.session_pid(other)]
    leader.stopped.set()
    other.stopped.set()
    await asyncio.gather(task, waiting)
