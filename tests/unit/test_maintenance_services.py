"""The maintenance services' shared loop, their Configs' checks and their cadences, in memory."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.settings import Settings
from worker.maintenance.leader import LeaderConfig
from worker.maintenance.reaper import ReaperConfig
from worker.maintenance.retention import Retention, RetentionConfig
from worker.maintenance.scheduler import FIRE_SLACK_SEC, Scheduler, SchedulerConfig, SchedulerResult
from worker.maintenance.service import MaintenanceService

NO_SESSIONS = cast(async_sessionmaker[AsyncSession], None)


def broken_sessions() -> async_sessionmaker[AsyncSession]:
    """Sessions whose every use fails, as when the database is gone."""

    def session() -> Any:
        raise ConnectionRefusedError("database down")

    return cast(async_sessionmaker[AsyncSession], session)


@dataclass
class Recorder(MaintenanceService):
    """Records its passes; the pass numbered `fail_on` raises."""

    wait_sec: float = 3600.0
    first_wait: float = 0.0
    fail_on: int | None = None
    calls: list[str] = field(default_factory=list)

    def first_wait_sec(self) -> float:
        return self.first_wait

    async def pass_then_wait(self) -> float:
        self.calls.append("pass")
        if len(self.passes) == self.fail_on:
            raise RuntimeError("the pass failed")
        return self.wait_sec

    @property
    def passes(self) -> list[str]:
        return [call for call in self.calls if call == "pass"]


def stop_after(stopped: asyncio.Event, service: Recorder, passes: int) -> Any:
    """A guard that records itself and lets `passes` passes start, the last one with stop set."""

    async def guard() -> None:
        service.calls.append("guard")
        if service.calls.count("guard") >= passes:
            stopped.set()

    return guard


async def test_service_loop_passes_at_once_with_the_guard_first_and_ends_when_stopped() -> None:
    service = Recorder()
    stopped = asyncio.Event()

    await service.run(stopped, stop_after(stopped, service, 1))

    # The pass under way when stop came finished; no second one started.
    assert service.calls == ["guard", "pass"]


async def test_service_loop_waits_its_first_wait_before_the_first_pass() -> None:
    service = Recorder(first_wait=3600)
    stopped = asyncio.Event()
    task = asyncio.create_task(service.run(stopped))
    for _ in range(3):
        await asyncio.sleep(0)  # let the loop start waiting

    assert service.calls == []
    stopped.set()
    await task
    assert service.calls == []


async def test_service_loop_ends_with_the_error_of_a_failing_pass() -> None:
    service = Recorder(wait_sec=0, fail_on=2)

    with pytest.raises(RuntimeError, match="the pass failed"):
        await service.run(asyncio.Event())

    assert service.passes == ["pass", "pass"]


async def test_service_loop_passes_nothing_once_the_guard_raises() -> None:
    service = Recorder()

    async def lost() -> None:
        raise ConnectionResetError("leadership gone")

    with pytest.raises(ConnectionResetError):
        await service.run(asyncio.Event(), lost)

    assert service.passes == []


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LeaderConfig(period_sec=0), "LeaderConfig.period_sec must be above zero"),
        (lambda: ReaperConfig(period_sec=-1), "ReaperConfig.period_sec must be above zero"),
        (lambda: ReaperConfig(batch_size=0), "ReaperConfig.batch_size must be above zero"),
        (
            lambda: SchedulerConfig(period_sec=math.nan),
            "SchedulerConfig.period_sec must be above zero, not nan",
        ),
        (lambda: SchedulerConfig(batch_size=-5), "SchedulerConfig.batch_size must be above zero"),
        (
            lambda: RetentionConfig(retention=timedelta(days=-1)),
            "RetentionConfig.retention must not be negative",
        ),
        (lambda: RetentionConfig(period_sec=0), "RetentionConfig.period_sec must be above zero"),
        (
            lambda: RetentionConfig(backlog_period_sec=0),
            "RetentionConfig.backlog_period_sec must be above zero",
        ),
        (lambda: RetentionConfig(batch_size=0), "RetentionConfig.batch_size must be above zero"),
        (
            lambda: RetentionConfig(max_batches_per_pass=0),
            "RetentionConfig.max_batches_per_pass must be above zero",
        ),
        (
            lambda: RetentionConfig(max_pass_sec=-0.5),
            "RetentionConfig.max_pass_sec must be above zero",
        ),
    ],
)
def test_maintenance_configs_reject_nonsense_naming_the_field(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_maintenance_configs_accept_a_zero_retention_which_keeps_everything() -> None:
    assert RetentionConfig(retention=timedelta(0)).retention == timedelta(0)


def test_leader_config_idle_timeout_is_three_periods_and_at_least_two_seconds() -> None:
    assert LeaderConfig(period_sec=10).idle_session_timeout_ms == 30_000
    assert LeaderConfig(period_sec=0.5).idle_session_timeout_ms == 2_000


def test_scheduler_wakes_at_the_next_fire_time_but_waits_a_period_at_most() -> None:
    scheduler = Scheduler(NO_SESSIONS, cast(Settings, None), "w", SchedulerConfig(period_sec=5))

    assert scheduler.wait_after(SchedulerResult(next_due_in_sec=None)) == 5
    assert scheduler.wait_after(SchedulerResult(next_due_in_sec=30)) == 5
    assert scheduler.wait_after(SchedulerResult(next_due_in_sec=0.5)) == 0.5 + FIRE_SLACK_SEC
    assert scheduler.wait_after(SchedulerResult(next_due_in_sec=-1)) < 0  # due: at once


async def test_retention_failure_is_logged_retried_a_period_later_and_keeps_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    retention = Retention(broken_sessions(), RetentionConfig(period_sec=60, backlog_period_sec=1))
    assert retention.first_wait_sec() == 0  # a new process prunes at once
    stopped = asyncio.Event()

    async def stop_after_this_pass() -> None:
        stopped.set()

    with caplog.at_level(logging.WARNING, logger="worker.retention"):
        await retention.run(stopped, stop_after_this_pass)  # the failed pass raised nothing

    assert "retention pass failed; will retry" in caplog.messages
    assert 59 < retention.first_wait_sec() <= 60  # a new term keeps the cadence
    assert await retention.pass_then_wait() == 60


async def test_retention_of_zero_passes_without_the_database_and_waits_its_period() -> None:
    retention = Retention(NO_SESSIONS, RetentionConfig(retention=timedelta(0), period_sec=300))

    assert await retention.pass_then_wait() == 300
