"""Retention: prunes finished jobs, their events and pgqueuer's history past a configured age,
and the registry rows of workers that died without leaving."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.history import HistoryPruner
from worker.maintenance.service import (
    MaintenanceService,
    is_dead_connection,
    require_positive,
)

logger = logging.getLogger("worker.retention")

RETENTION_DEFAULT = timedelta(days=7)
PERIOD_SEC_DEFAULT = 300.0
BACKLOG_PERIOD_SEC_DEFAULT = 10.0
BATCH_SIZE_DEFAULT = 1000
MAX_BATCHES_PER_PASS_DEFAULT = 20
# A leader that resigns, or a worker that shuts down, waits for a pass in progress: a
# slow database keeps it waiting this long at most (plus the batch under way).
MAX_PASS_SEC_DEFAULT = 5.0
# A dead worker's dl_workers row is ignored by every reader after its liveness window
# (minutes); it is deleted this long after it was last seen.
WORKER_EXPIRY_DEFAULT = timedelta(hours=1)


@dataclass(frozen=True)
class RetentionConfig:
    """What retention deletes, how often, and how much one pass and one batch take on."""

    # Finished jobs (by finished_at), pgqueuer_log and pgqueuer_statistics rows (by created)
    # older than this are deleted (DL_RETENTION_DAYS); zero keeps everything. Queued and
    # running jobs are never deleted.
    retention: timedelta = RETENTION_DEFAULT
    # Seconds between the end of a pass and the next (DL_RETENTION_PERIOD_SEC); a pass that
    # failed is tried again this long after. Kept across terms: a worker that leads again
    # prunes when its pass is due, a new process at once.
    period_sec: float = PERIOD_SEC_DEFAULT
    # While a pass leaves old rows behind, the next follows after this instead, when it is
    # shorter (DL_REAPER_PERIOD_SEC), until the backlog is gone.
    backlog_period_sec: float = BACKLOG_PERIOD_SEC_DEFAULT
    # Jobs (each with its events) or pgqueuer rows per batch, one transaction each
    # (DL_RETENTION_BATCH_SIZE).
    batch_size: int = BATCH_SIZE_DEFAULT
    # Bounds one pass (DL_RETENTION_MAX_BATCHES_PER_PASS); no new batch starts after
    # `max_pass_sec` either.
    max_batches_per_pass: int = MAX_BATCHES_PER_PASS_DEFAULT
    max_pass_sec: float = MAX_PASS_SEC_DEFAULT
    # dl_workers rows not refreshed for this long are deleted by every pass (readers ignore
    # them long before; a zero retention, which touches nothing, keeps them too).
    worker_expiry: timedelta = WORKER_EXPIRY_DEFAULT

    def __post_init__(self) -> None:
        """Reject a negative retention, and periods or bounds that are not above zero."""
        if self.retention < timedelta(0):
            message = f"RetentionConfig.retention must not be negative, not {self.retention}"
            raise ValueError(message)
        require_positive(
            self,
            period_sec=self.period_sec,
            backlog_period_sec=self.backlog_period_sec,
            batch_size=self.batch_size,
            max_batches_per_pass=self.max_batches_per_pass,
            max_pass_sec=self.max_pass_sec,
        )

    @property
    def backlog_wait_sec(self) -> float:
        """The wait after a pass that left old rows behind."""
        return min(self.backlog_period_sec, self.period_sec)


@dataclass(frozen=True)
class RetentionResult:
    """What one pass deleted, and whether it stopped before everything old was gone."""

    jobs: int = 0
    events: int = 0  # events of the deleted jobs, and orphans (events whose job is gone)
    pgqueuer_log: int = 0
    pgqueuer_statistics: int = 0
    workers: int = 0  # dl_workers rows of workers long gone
    # dl_workflows rows whose steps were all deleted, older than the retention.
    workflows: int = 0
    more_remain: bool = False
    batches: int = 0
    # The longest batch, commit included: the longest any row lock of the pass was held.
    longest_batch_sec: float = 0.0

    @property
    def deleted(self) -> int:
        """Rows deleted by the pass, all tables together."""
        return (
            self.jobs
            + self.events
            + self.pgqueuer_log
            + self.pgqueuer_statistics
            + self.workers
            + self.workflows
        )


@dataclass
class _Tally:
    jobs: int = 0
    events: int = 0
    pgqueuer_log: int = 0
    pgqueuer_statistics: int = 0
    batches: int = 0
    longest_batch_sec: float = 0.0


@dataclass
class Retention(MaintenanceService):
    """Deletes history older than the retention, in batches of `batch_size` rows.

    Each batch is a transaction of its own, so no lock is held for long, and a pass runs at
    most `max_batches_per_pass` of them (round robin over the tables, so a backlog in one
    does not starve the others); `more_remain` then brings the next pass sooner. A zero
    retention keeps everything. A pass that fails is logged and tried again a period later:
    it never costs the leadership, which the reaper and the scheduler need.
    """

    sessions: async_sessionmaker[AsyncSession]
    config: RetentionConfig = field(default_factory=RetentionConfig)
    # Where the sweep for orphan events goes on; kept between passes.
    _orphan_cursor: int = field(default=0, init=False, repr=False)
    # When the next pass is due (time.monotonic()); kept between terms.
    _next_pass_at: float = field(default=0.0, init=False, repr=False)
    _history: HistoryPruner = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._history = HistoryPruner(self.sessions)

    @property
    def retention(self) -> timedelta:
        """History older than this is deleted (the config's)."""
        return self.config.retention

    @property
    def batch_size(self) -> int:
        """Rows per batch, one transaction each (the config's)."""
        return self.config.batch_size

    @property
    def enabled(self) -> bool:
        """Whether anything is ever deleted (a zero retention keeps history forever)."""
        return self.retention > timedelta(0)

    def first_wait_sec(self) -> float:
        """A new term waits for the pass that was due anyway; a new process prunes at once."""
        return max(0.0, self._next_pass_at - time.monotonic())

    async def pass_then_wait(self) -> float:
        """One pass; then a period's wait, a shorter one while a backlog remains."""
        try:
            result = await self.run_once()
        except Exception as error:
            if is_dead_connection(error):
                raise  # the loop runs the pass again at once, on new connections
            logger.warning("retention pass failed; will retry", exc_info=True)
            wait = self.config.period_sec
        else:
            wait = self.config.backlog_wait_sec if result.more_remain else self.config.period_sec
        self._next_pass_at = time.monotonic() + wait
        return wait

    async def run_once(self) -> RetentionResult:
        """One bounded pass over the four kinds of history, and expired worker rows."""
        if not self.enabled:
            return RetentionResult()
        # A handful of rows at most, one statement: not counted as a batch.
        expired_workers = await self._history.expired_workers(self.config.worker_expiry)
        idle_buckets = await self._history.idle_rate_buckets()
        if idle_buckets:
            logger.info("retention: deleted %d idle rate bucket(s)", idle_buckets)
        # One bounded statement: a workflow's steps went with the finished jobs before.
        emptied = await self._history.emptied_workflows(self.retention, self.batch_size)
        if emptied:
            logger.info("retention: deleted %d workflow(s) whose steps were gone", emptied)
        old_batches = await self._history.completed_batches(self.retention, self.batch_size)
        if old_batches:
            logger.info("retention: deleted %d completed batch(es)", old_batches)
        tally = _Tally()
        # Each step runs one batch and says whether a full one may follow.
        steps: dict[str, Callable[[_Tally], Awaitable[bool]]] = {
            "jobs": self._jobs_batch,
            "pgqueuer_log": self._log_batch,
            "pgqueuer_statistics": self._statistics_batch,
            "orphan_events": self._orphan_batch,
        }
        pending = dict(steps)
        deadline = time.perf_counter() + self.config.max_pass_sec

        def may_go_on() -> bool:
            return (
                tally.batches < self.config.max_batches_per_pass and time.perf_counter() < deadline
            )

        while pending and may_go_on():
            for name, step in list(pending.items()):
                if not may_go_on():
                    break
                if name == "orphan_events" and "jobs" in pending:
                    # While old jobs remain, the sweep would mostly look at their events,
                    # which go with them anyway.
                    continue
                started = time.perf_counter()
                more = await step(tally)
                tally.batches += 1
                tally.longest_batch_sec = max(
                    tally.longest_batch_sec, time.perf_counter() - started
                )
                if not more:
                    del pending[name]
        # The orphan sweep only looks; it never makes a backlog worth hurrying for.
        more_remain = any(name != "orphan_events" for name in pending)
        result = RetentionResult(
            jobs=tally.jobs,
            events=tally.events,
            pgqueuer_log=tally.pgqueuer_log,
            pgqueuer_statistics=tally.pgqueuer_statistics,
            workers=expired_workers,
            workflows=emptied,
            more_remain=more_remain,
            batches=tally.batches,
            longest_batch_sec=tally.longest_batch_sec,
        )
        self._log_expired_workers(expired_workers)
        if result.deleted - result.workers - result.workflows:
            logger.info(
                "retention: deleted jobs=%d events=%d pgqueuer_log=%d pgqueuer_statistics=%d"
                " in %d batch(es), longest %.3f s%s",
                result.jobs,
                result.events,
                result.pgqueuer_log,
                result.pgqueuer_statistics,
                result.batches,
                result.longest_batch_sec,
                "; more remain" if more_remain else "",
            )
        return result

    @staticmethod
    def _log_expired_workers(count: int) -> None:
        if count:
            logger.info("retention: deleted %d expired dl_workers row(s)", count)

    async def _jobs_batch(self, tally: _Tally) -> bool:
        batch = await self._history.finished_jobs(self.retention, self.batch_size)
        tally.jobs += batch.jobs
        tally.events += batch.events
        return batch.jobs >= self.batch_size

    async def _log_batch(self, tally: _Tally) -> bool:
        deleted = await self._history.pgqueuer_log(self.retention, self.batch_size)
        tally.pgqueuer_log += deleted
        return deleted >= self.batch_size

    async def _statistics_batch(self, tally: _Tally) -> bool:
        deleted = await self._history.pgqueuer_statistics(self.retention, self.batch_size)
        tally.pgqueuer_statistics += deleted
        return deleted >= self.batch_size

    async def _orphan_batch(self, tally: _Tally) -> bool:
        """One window of the sweep, which walks the events from the oldest up.

        It starts over from the beginning once it reaches events younger than the
        retention (ids grow with time, so nothing older lies beyond) or the end.
        """
        window = await self._history.orphan_events(
            self.retention, self._orphan_cursor, self.batch_size
        )
        tally.events += window.deleted
        if window.last_id is None or not window.last_is_old or window.scanned < self.batch_size:
            self._orphan_cursor = 0
            return False
        self._orphan_cursor = window.last_id
        return True
