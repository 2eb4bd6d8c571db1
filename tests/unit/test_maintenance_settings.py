"""Maintenance settings (DL_REAPER_*, DL_SCHEDULE_*, DL_RETENTION_*): defaults, mapping, errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.settings import Settings, SettingsError, load_settings
from worker.maintenance.config import MaintenanceConfig
from worker.maintenance.retention import Retention, RetentionResult

NO_SESSIONS = cast(async_sessionmaker[AsyncSession], None)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the caller's environment or a `.env` file."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


def test_retention_settings_defaults() -> None:
    settings = load_settings()

    config = MaintenanceConfig.from_settings(settings).retention

    assert config.retention == timedelta(days=7)
    assert config.batch_size == 1000
    assert config.max_batches_per_pass == 20
    assert settings.dl_retention_period_sec == 300
    assert config.period_sec == 300
    assert config.backlog_wait_sec == 10  # a reaper period, while a backlog remains


def test_retention_settings_read_fractions_of_a_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DL_RETENTION_DAYS", "0.5")
    monkeypatch.setenv("DL_RETENTION_BATCH_SIZE", "250")
    monkeypatch.setenv("DL_RETENTION_MAX_BATCHES_PER_PASS", "4")
    monkeypatch.setenv("DL_RETENTION_PERIOD_SEC", "60")

    settings = load_settings()
    config = MaintenanceConfig.from_settings(settings).retention

    assert config.retention == timedelta(hours=12)
    assert (config.batch_size, config.max_batches_per_pass) == (250, 4)
    assert settings.dl_retention_period_sec == 60
    assert config.period_sec == 60


async def test_retention_of_zero_days_is_disabled_and_touches_no_database() -> None:
    config = MaintenanceConfig.from_settings(load_settings(dl_retention_days=0))
    retention = Retention(NO_SESSIONS, config.retention)

    assert not retention.enabled
    assert await retention.run_once() == RetentionResult()  # no sessions were needed


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DL_RETENTION_DAYS", "-1"),
        ("DL_RETENTION_DAYS", "a week"),
        ("DL_RETENTION_PERIOD_SEC", "0"),
        ("DL_RETENTION_BATCH_SIZE", "0"),
        ("DL_RETENTION_MAX_BATCHES_PER_PASS", "0"),
    ],
)
def test_retention_settings_reject_bad_values_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: Any
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_maintenance_config_defaults_are_the_settings_defaults() -> None:
    assert MaintenanceConfig.from_settings(load_settings()) == MaintenanceConfig()


def test_maintenance_config_maps_the_periods_of_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DL_REAPER_PERIOD_SEC", "2.5")
    monkeypatch.setenv("DL_SCHEDULE_PERIOD_SEC", "0.25")
    monkeypatch.setenv("DL_RETENTION_PERIOD_SEC", "60")

    config = MaintenanceConfig.from_settings(load_settings())

    # The reaper's period also paces the election and a retention backlog.
    assert config.leader.period_sec == 2.5
    assert config.leader.idle_session_timeout_ms == 7500
    assert config.reaper.period_sec == 2.5
    assert config.retention.backlog_period_sec == 2.5
    assert config.retention.backlog_wait_sec == 2.5
    assert config.scheduler.period_sec == 0.25
    assert config.retention.period_sec == 60
