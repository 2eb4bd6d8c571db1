"""The one place where the environment's settings become the maintenance services' Configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from app.settings import Settings
from worker.maintenance.leader import LeaderConfig
from worker.maintenance.reaper import ReaperConfig
from worker.maintenance.retention import RetentionConfig
from worker.maintenance.scheduler import SchedulerConfig


@dataclass(frozen=True)
class MaintenanceConfig:
    """The leader's Config and each service's; the defaults are the settings' defaults."""

    leader: LeaderConfig = field(default_factory=LeaderConfig)
    reaper: ReaperConfig = field(default_factory=ReaperConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    @classmethod
    def from_settings(cls, settings: Settings) -> MaintenanceConfig:
        """DL_REAPER_PERIOD_SEC, DL_SCHEDULE_PERIOD_SEC and DL_RETENTION_* in the services' terms.

        DL_REAPER_PERIOD_SEC also paces the election and a retention backlog, as it always
        has; the batch sizes of the reaper and the scheduler have no setting.
        """
        reaper_period_sec = settings.dl_reaper_period_sec
        return cls(
            leader=LeaderConfig(period_sec=reaper_period_sec),
            reaper=ReaperConfig(period_sec=reaper_period_sec),
            scheduler=SchedulerConfig(period_sec=settings.dl_schedule_period_sec),
            retention=RetentionConfig(
                retention=timedelta(days=settings.dl_retention_days),
                period_sec=settings.dl_retention_period_sec,
                backlog_period_sec=reaper_period_sec,
                batch_size=settings.dl_retention_batch_size,
                max_batches_per_pass=settings.dl_retention_max_batches_per_pass,
            ),
        )
