"""The scheduler: fires due cron schedules, each in a transaction of its own."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.schedule_firing import FireKind, FireOutcome, ScheduleFiring
from app.observability.metrics import worker_metrics
from app.settings import Settings
from worker.attempt_trace import JOB_ID, WORKER_ID
from worker.maintenance.service import (
    MaintenanceService,
    again_if_connection_was_dead,
    require_positive,
    wait_for_either,
)

logger = logging.getLogger("worker.scheduler")

PERIOD_SEC_DEFAULT = 60.0
BATCH_SIZE_DEFAULT = 100
# Wake a little after a fire time, so the schedule is due by the database clock.
FIRE_SLACK_SEC = 0.01


@dataclass(frozen=True)
class SchedulerConfig:
    """How long the scheduler may wait between looks, and how many schedules a pass fires."""

    # The longest wait between two passes (DL_SCHEDULE_PERIOD_SEC): a safety net. The
    # scheduler sleeps until the next fire time it read, and a change notice wakes it
    # earlier; this bounds how late it sees a change whose notice it missed (a LISTEN lost
    # with pgqueuer's connection, a row edited by hand). A schedule that failed to fire is
    # tried again this long after.
    period_sec: float = PERIOD_SEC_DEFAULT
    # Due schedules one pass fires, each in a transaction of its own; when more are due,
    # the next pass follows at once.
    batch_size: int = BATCH_SIZE_DEFAULT

    def __post_init__(self) -> None:
        """Reject a period or batch size that is not above zero."""
        require_positive(self, period_sec=self.period_sec, batch_size=self.batch_size)


@dataclass(frozen=True)
class SchedulerResult:
    """What one pass did, and when the next schedule is due."""

    counts: dict[FireKind, int] = field(default_factory=dict)
    failed: int = 0
    # Seconds from the end of the pass to the earliest enabled fire time (a failed schedule
    # counts as due a period later); None: none enabled.
    next_due_in_sec: float | None = None

    @property
    def fired(self) -> int:
        """Schedules that fired a job in this pass."""
        return self.counts.get(FireKind.FIRED, 0)


@dataclass
class Scheduler(MaintenanceService):
    """Fires every due, enabled schedule once per pass; one failing row never stops the rest."""

    sessions: async_sessionmaker[AsyncSession]
    # What fired jobs are created with (the same defaults as a trigger's).
    settings: Settings
    worker_id: str
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    # Set by a change notice (`notice_received`); ends the wait between passes early.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # This process's tracer (app.observability.tracing); None while tracing is off.
    tracer: Tracer | None = None
    _firing: ScheduleFiring = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._firing = ScheduleFiring(self.sessions, self.settings)

    @property
    def batch_size(self) -> int:
        """Due schedules one pass fires (the config's)."""
        return self.config.batch_size

    def notice_received(self, payload: object) -> None:
        """A schedule changed (a notice on CHANGES_CHANNEL): the next pass comes at once.

        Every worker listens; only the leader's scheduler is running to act on it, and a
        new term starts with a pass anyway.
        """
        self.wake.set()

    async def pass_then_wait(self) -> float:
        """One pass; then a wait until the next fire time, or a period when that is later."""
        return self.wait_after(await self.run_once())

    async def sleep(self, stopped: asyncio.Event, seconds: float) -> bool:
        """Sleep `seconds`, or until stopped or woken by a change notice."""
        return await wait_for_either(stopped, self.wake, seconds)

    def wait_after(self, result: SchedulerResult) -> float:
        """Seconds from the end of a pass to the next: the next fire time, at most a period."""
        if result.next_due_in_sec is None:
            return self.config.period_sec
        return min(self.config.period_sec, result.next_due_in_sec + FIRE_SLACK_SEC)

    async def run_once(self) -> SchedulerResult:
        """One pass over the schedules due by the database clock."""
        # Cleared before the look: a notice that comes during the pass may concern a change
        # the look did not see, so it brings the next pass at once.
        self.wake.clear()
        looked_at = time.monotonic()
        look = await self._firing.look(self.batch_size)
        # When each known fire time comes, on this process's clock.
        next_times: list[float] = []
        if look.next_due_in_sec is not None:
            next_times.append(looked_at + look.next_due_in_sec)
        counts: dict[FireKind, int] = {}
        failed = 0
        fires = worker_metrics().schedule_fires
        for schedule_id in look.due:
            outcome = await self._fire(schedule_id)
            if outcome is None:
                failed += 1
                fires.labels("error").inc()
                # Still due: look again a period later, not at once.
                next_times.append(time.monotonic() + self.config.period_sec)
                continue
            counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
            fires.labels(outcome.kind.value).inc()
            if outcome.next_due_in_sec is not None:
                next_times.append(time.monotonic() + outcome.next_due_in_sec)
            self._log(outcome)
        next_due = max(min(next_times) - time.monotonic(), 0.0) if next_times else None
        return SchedulerResult(counts=counts, failed=failed, next_due_in_sec=next_due)

    async def _fire(self, schedule_id: uuid.UUID) -> FireOutcome | None:
        """Fire one schedule in its own transaction; None (logged, recorded) when it failed.

        Traced, each firing is a span of its own, the parent of the job it creates.
        """
        if self.tracer is None:
            return await self._fire_untraced(schedule_id)
        with self.tracer.start_as_current_span(
            "schedule fire",
            kind=SpanKind.PRODUCER,
            attributes={"dataloader.schedule.id": str(schedule_id), WORKER_ID: self.worker_id},
        ) as span:
            outcome = await self._fire_untraced(schedule_id)
            if outcome is None:
                span.set_status(Status(StatusCode.ERROR, "failed to fire"))
                return None
            span.update_name(f"schedule {outcome.name}" if outcome.name else "schedule fire")
            span.set_attribute("dataloader.schedule.outcome", outcome.kind.value)
            if outcome.name:
                span.set_attribute("dataloader.schedule.name", outcome.name)
            if outcome.job_id is not None:
                span.set_attribute(JOB_ID, str(outcome.job_id))
            return outcome

    async def _fire_untraced(self, schedule_id: uuid.UUID) -> FireOutcome | None:
        try:
            # Not a period later for want of a live connection.
            return await again_if_connection_was_dead(lambda: self._firing.fire(schedule_id))
        except Exception as exc:  # rolled back; the other schedules still fire
            logger.warning("schedule %s failed to fire; will retry", schedule_id, exc_info=True)
            message = f"failed to fire: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            try:
                await self._firing.record_error(schedule_id, message)
            except Exception:  # the database may be gone; the warning above says enough
                logger.debug("could not record the schedule's error", exc_info=True)
            return None

    def _log(self, outcome: FireOutcome) -> None:
        if outcome.kind is FireKind.FIRED:
            logger.info(
                "schedule %s fired for %s: job %s%s (worker %s)",
                outcome.name,
                outcome.fire_time.isoformat() if outcome.fire_time else "?",
                outcome.job_id,
                "" if outcome.created else " (already existed)",
                self.worker_id,
            )
        elif outcome.kind is FireKind.DISABLED:
            logger.warning("schedule %s disabled: %s", outcome.name, outcome.error)
        elif outcome.kind is FireKind.SKIPPED_INSTANCE:
            logger.warning("schedule %s skipped a fire time: %s", outcome.name, outcome.error)
