"""One attempt of one job: lock, start, run with heartbeat, then finish, retry or cancel."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from anyio import CancelScope
from opentelemetry.trace import Tracer

from app.domain.attempts import FinishRequest, RequeueRequest, StartAnswer, StartedAttempt
from app.domain.states import JobEvent, JobStatus
from app.jobs.availability import database_unreachable
from app.jobs.manager import JobManager
from app.jobs.results import JobResults
from app.observability.metrics import worker_metrics
from app.pipelines.context import PipelineContext
from app.pipelines.errors import PermanentError
from app.pipelines.registry import get_pipeline, registered_names
from app.pipelines.results import ResultError, encode_result
from app.settings import Settings
from worker.attempt_log import AttemptEnd, attempt_end_fields, attempt_end_message
from worker.attempt_trace import AttemptSpan, attempt_span
from worker.db_retry import retry_while_unreachable
from worker.finish_writer import FinishWriter
from worker.invoke import PipelineCanceled, is_interruptible, run_pipeline
from worker.lock_session import LockSession
from worker.unregistered_task import TaskHolders, unregistered_task_error

# A start a rate limit refuses until at most this many seconds from now waits in the worker
# and asks again, up to RATE_WAITS_IN_PLACE times, before the job is postponed. It holds one
# of the queue's concurrency slots that long, so it stays short.
RATE_WAIT_IN_PLACE_SEC = 0.5
RATE_WAITS_IN_PLACE = 3

logger = logging.getLogger("worker.runner")

ERROR_LIMIT = 4000
TRACEBACK_LIMIT = 20_000
WATCH_INTERVAL_SEC = 0.05


class Outcome(enum.Enum):
    """How an attempt ended, from the runner's point of view."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    FENCED = "fenced"
    INTERRUPTED = "interrupted"


@dataclass
class AttemptRun:
    """The live state of one running attempt, shared by its pipeline and its heartbeat."""

    started: StartedAttempt
    context: PipelineContext
    progress: dict[str, Any] | None = None
    progress_dirty: bool = False
    fenced: asyncio.Event = field(default_factory=asyncio.Event)
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    retried: bool = False  # failed, and scheduled to run again
    error: str | None = None  # why it failed, for the attempt's log line
    retry_at: datetime | None = None  # when a failed attempt's job runs again
    result_json: str | None = None  # the pipeline's result, checked, once it succeeded
    # The body has ended and its end is being written: the heartbeat only keeps the lease.
    finishing: bool = False

    def save_progress(self, progress: dict[str, Any]) -> None:
        """Keep the latest progress; the heartbeat writes it."""
        self.progress = progress
        self.progress_dirty = True


@dataclass
class Runner:
    """Runs attempts for a worker process."""

    settings: Settings
    manager: JobManager
    locks: LockSession
    finishes: FinishWriter
    worker_id: str
    # Asked when a job's task has no pipeline here (worker.unregistered_task).
    task_holders: TaskHolders | None = None
    # Where a dependent's pipeline reads its parents' results (ctx.parent_results()).
    results: JobResults | None = None
    # This process's tracer (app.observability.tracing); None while tracing is off.
    tracer: Tracer | None = None
    active: dict[uuid.UUID, AttemptRun] = field(default_factory=dict)

    def interrupt_all(self) -> None:
        """Stop every running attempt at its next checkpoint and give its attempt back."""
        for run in self.active.values():
            run.interrupt.set()

    def interrupt_jobs(self, job_ids: list[uuid.UUID]) -> None:
        """Stop these attempts at their next checkpoint and give their attempts back."""
        for job_id in job_ids:
            run = self.active.get(job_id)
            if run is not None:
                run.interrupt.set()

    async def run_dispatch(
        self, job_id: uuid.UUID, pgq_job_id: int, pgq_cancel: CancelScope | None
    ) -> None:
        """Handle one pgqueuer dispatch of `job_id`."""
        # A start that could not reach the database wrote nothing, so it is asked again;
        # failing it would hand the dispatch back to pgqueuer as an error, and the job
        # would wait for the reaper to dispatch it anew.
        what = f"starting job {job_id}"
        answer = await retry_while_unreachable(
            partial(self.locks.start, job_id, pgq_job_id), what=what
        )
        for _ in range(RATE_WAITS_IN_PLACE):
            # A slot of its rate bucket frees in a moment: waiting here costs nothing, while
            # a postpone costs a transaction and a new dispatch, and comes back later.
            wait = answer.rate_wait_sec if answer is not None else None
            if wait is None or wait > RATE_WAIT_IN_PLACE_SEC:
                break
            await asyncio.sleep(wait)
            answer = await retry_while_unreachable(
                partial(self.locks.start, job_id, pgq_job_id, waited_for_rate=True), what=what
            )
        if answer is None:
            return  # canceled, finished, or superseded by a newer dispatch
        if answer.attempt is None:
            if answer.paused:
                await self._park_paused(job_id, pgq_job_id)
            elif answer.trigger_open:
                await self._postpone_for_trigger(job_id, pgq_job_id)
            elif answer.lock_busy:
                await self._postpone(job_id, pgq_job_id, answer.lock_key)
            elif answer.group_full:
                await self._postpone_for_group(job_id, pgq_job_id, answer)
            elif answer.rate_limited:
                await self._postpone_for_rate(job_id, pgq_job_id, answer)
            return
        try:
            await self._run_started(answer.attempt, pgq_cancel)
        finally:
            # A no-op when the final write already released it through the lock session.
            self.locks.release(answer.lock_key, job_id)

    async def _postpone(self, job_id: uuid.UUID, pgq_job_id: int, lock_key: str) -> None:
        """Its lock_key is busy: the job waits DL_CLAIM_BACKOFF_SEC under a new dispatch."""
        postponed = await retry_while_unreachable(
            partial(
                self.manager.postpone,
                job_id,
                pgq_job_id,
                delay_sec=self.settings.dl_claim_backoff_sec,
                lock_key=lock_key,
                worker_id=self.worker_id,
            ),
            what=f"postponing job {job_id}",
        )
        if postponed:
            worker_metrics().lock_busy.inc()
            logger.debug(
                "lock busy, job postponed: job %s lock_key %r",
                job_id,
                lock_key,
                extra={"job_id": str(job_id), "lock_key": lock_key},
            )

    async def _postpone_for_group(
        self, job_id: uuid.UUID, pgq_job_id: int, answer: StartAnswer
    ) -> None:
        """Its concurrency group is full: wait DL_CLAIM_BACKOFF_SEC, like a busy lock_key."""
        if answer.concurrency_key is None or answer.concurrency_limit is None:
            return  # group_full says both are set (dl_jobs' check pairs them)
        postponed = await retry_while_unreachable(
            partial(
                self.manager.postpone_for_group,
                job_id,
                pgq_job_id,
                delay_sec=self.settings.dl_claim_backoff_sec,
                concurrency_key=answer.concurrency_key,
                concurrency_limit=answer.concurrency_limit,
                worker_id=self.worker_id,
            ),
            what=f"postponing job {job_id}",
        )
        if postponed:
            logger.debug(
                "concurrency group full, job postponed: job %s concurrency_key %r",
                job_id,
                answer.concurrency_key,
                extra={"job_id": str(job_id), "concurrency_key": answer.concurrency_key},
            )

    async def _postpone_for_trigger(self, job_id: uuid.UUID, pgq_job_id: int) -> None:
        """A trigger that joined the job is still open: wait DL_CLAIM_BACKOFF_SEC for it."""
        postponed = await retry_while_unreachable(
            partial(
                self.manager.postpone_for_trigger,
                job_id,
                pgq_job_id,
                delay_sec=self.settings.dl_claim_backoff_sec,
                worker_id=self.worker_id,
            ),
            what=f"postponing job {job_id}",
        )
        if postponed:
            logger.debug(
                "a trigger that joined the job is open, job postponed: job %s",
                job_id,
                extra={"job_id": str(job_id)},
            )

    async def _postpone_for_rate(
        self, job_id: uuid.UUID, pgq_job_id: int, answer: StartAnswer
    ) -> None:
        """A rate limit of its queue held it back: due again when its bucket said."""
        if answer.retry_at is None or answer.limited_by is None:
            return  # rate_limited answers carry both (dl_rate_admit)
        postponed = await retry_while_unreachable(
            partial(
                self.manager.postpone_for_rate,
                job_id,
                pgq_job_id,
                until=answer.retry_at,
                limited_by=answer.limited_by,
                rate_key=answer.rate_key,
                worker_id=self.worker_id,
            ),
            what=f"postponing job {job_id}",
        )
        if postponed:
            worker_metrics().rate_limited.labels(answer.queue, answer.limited_by).inc()
            logger.debug(
                "rate limited, job postponed: job %s until %s (%s limit)",
                job_id,
                answer.retry_at.isoformat(),
                answer.limited_by,
                extra={"job_id": str(job_id), "limit": answer.limited_by},
            )

    async def _park_paused(self, job_id: uuid.UUID, pgq_job_id: int) -> None:
        """Its queue was paused as this dispatch was picked: wait for the resume, uncounted."""
        parked = await retry_while_unreachable(
            partial(self.manager.park, job_id, pgq_job_id, worker_id=self.worker_id),
            what=f"parking job {job_id}",
        )
        if parked:
            logger.info("queue paused, job waits for the resume: job %s", job_id)

    async def _run_started(self, started: StartedAttempt, pgq_cancel: CancelScope | None) -> None:
        """Run a started attempt to its end and write how it ended."""
        job_id = started.job_id
        context = PipelineContext(
            job_id=job_id,
            attempt=started.attempt,
            task=started.task,
            queue=started.queue,
            parent_results_reader=None
            if self.results is None
            else partial(self.results.parents, job_id),
            loop=asyncio.get_running_loop(),
        )
        run = AttemptRun(started=started, context=context)
        context.progress_sink = run.save_progress
        self.active[job_id] = run
        log = {"job_id": str(job_id), "attempt": started.attempt, "worker_id": self.worker_id}
        # Every line logged for this attempt (pipeline and heartbeat included: their tasks
        # copy this context) names the job; reset in the finally below.
        bound = structlog.contextvars.bind_contextvars(
            **log, queue=started.queue, task=started.task
        )
        metrics = worker_metrics()
        metrics.attempts_started.labels(started.queue, started.task).inc()
        began = time.monotonic()
        # The start is in the job's events; the log keeps one line per attempt, at its end.
        logger.debug(
            "attempt started: job %s attempt %d",
            job_id,
            started.attempt,
            extra={"job_args": started.args},  # the formatter masks secret-looking keys
        )
        # The pipeline and heartbeat tasks copy the span's context: a job the pipeline
        # triggers stores this attempt as its parent.
        try:
            with attempt_span(self.tracer, started, self.worker_id) as span:
                await self._run_and_write(run, pgq_cancel, span, log, began)
        finally:
            self.active.pop(job_id, None)
            structlog.contextvars.reset_contextvars(**bound)

    async def _run_and_write(
        self,
        run: AttemptRun,
        pgq_cancel: CancelScope | None,
        span: AttemptSpan,
        log: dict[str, Any],
        began: float,
    ) -> None:
        """The attempt's body: execute, write its end, log, count and trace it."""
        started = run.started
        job_id = started.job_id
        metrics = worker_metrics()
        # The heartbeat outlives the body until the end is written: a finish write that
        # waits out a database restart must not let the lease expire meanwhile, or the
        # reaper would run a job whose body already ran to its end a second time.
        heart = asyncio.create_task(self._heartbeat_loop(run))
        try:
            outcome, error = await self._execute(run, pgq_cancel)
            run.finishing = True
            written = await self._finish(run, outcome, error)
        finally:
            heart.cancel()
            with contextlib.suppress(BaseException):
                await heart
        if not written and outcome is not Outcome.FENCED:
            logger.warning(
                "lease lost: job %s attempt %d ended %s but another attempt owns the job;"
                " nothing written",
                job_id,
                started.attempt,
                outcome.value,
                extra=log,
            )
            outcome = Outcome.FENCED
        end = AttemptEnd(
            outcome=outcome.value,
            job_id=job_id,
            attempt=started.attempt,
            max_attempts=started.max_attempts,
            error=run.error if outcome is Outcome.FAILED else None,
            retry_at=run.retry_at if outcome is Outcome.FAILED else None,
        )
        # A failure says why and when it runs again, so the log alone answers both.
        logger.log(
            logging.WARNING if end.error else logging.INFO,
            "%s",
            attempt_end_message(end),
            extra={**log, **attempt_end_fields(end)},
        )
        label = "retried" if run.retried and outcome is Outcome.FAILED else outcome.value
        span.end_with(label, error, end.error)
        metrics.attempts_finished.labels(started.queue, started.task, label).inc()
        metrics.job_duration.labels(started.queue, started.task).observe(time.monotonic() - began)

    async def _execute(
        self, run: AttemptRun, pgq_cancel: CancelScope | None
    ) -> tuple[Outcome, BaseException | None]:
        """Run the pipeline beside its heartbeat until it ends or must stop."""
        func = get_pipeline(run.started.task)
        if func is None:
            return Outcome.FAILED, await unregistered_task_error(
                run.started.task,
                run.started.queue,
                self.worker_id,
                registered_names(),
                self.task_holders,
            )
        body = asyncio.create_task(run_pipeline(func, run.started.args, run.context))
        stop_reason: Outcome | None = None
        while not body.done():
            await asyncio.wait({body}, timeout=WATCH_INTERVAL_SEC)
            if body.done():
                break
            if pgq_cancel is not None and pgq_cancel.cancel_called:
                run.context.cancel_event.set()
            stop_reason = self._stop_reason(run)
            if stop_reason is not None and is_interruptible(func):
                body.cancel()
                break
        try:
            await body
        except asyncio.CancelledError:
            return stop_reason or Outcome.CANCELED, None
        except PipelineCanceled:
            return self._stop_reason(run) or Outcome.CANCELED, None
        except Exception as exc:  # a pipeline's failure is data about the job, not a crash
            return self._stop_reason(run) or Outcome.FAILED, exc
        # The body ran to its end: its work is done, so a shutdown's interrupt that came
        # meanwhile must not requeue it (it would run twice). Fencing and cancel still hold.
        reason = self._stop_reason(run)
        if reason is Outcome.INTERRUPTED:
            reason = None
        if reason is not None:
            return reason, None
        try:
            run.result_json = encode_result(run.context.result, self.settings.dl_result_max_bytes)
        except ResultError as exc:  # not storable: the job fails, naming why
            return Outcome.FAILED, exc
        return Outcome.SUCCEEDED, None

    @staticmethod
    def _stop_reason(run: AttemptRun) -> Outcome | None:
        if run.fenced.is_set():
            return Outcome.FENCED
        if run.context.cancel_event.is_set():
            return Outcome.CANCELED
        if run.interrupt.is_set():
            return Outcome.INTERRUPTED
        return None

    async def _heartbeat_loop(self, run: AttemptRun) -> None:
        """Extend the lease, read the cancel flag every DL_HEARTBEAT_SEC, until the end is written.

        New progress is saved sooner, at most every DL_PROGRESS_SEC, so people watching the
        job see it move; a pipeline that reports none costs one write per heartbeat.
        """
        heartbeat_sec = self.settings.dl_heartbeat_sec
        next_beat = time.monotonic() + heartbeat_sec
        while True:
            await asyncio.sleep(min(heartbeat_sec, self.settings.dl_progress_sec))
            if time.monotonic() < next_beat and not run.progress_dirty:
                continue
            next_beat = time.monotonic() + heartbeat_sec
            progress = run.progress if run.progress_dirty else None
            try:
                cancel = await self.manager.heartbeat(
                    run.started.job_id, run.started.attempt, progress
                )
            except Exception as exc:  # the database may be back by the next beat
                if database_unreachable(exc):
                    # Down, restarting or out of connection slots: the lease outlasts a
                    # few missed beats, and a traceback per beat would say nothing more.
                    logger.warning("heartbeat failed: %s: %s", type(exc).__name__, exc)
                else:
                    logger.warning("heartbeat failed", exc_info=True)
                continue
            if cancel is None:
                if run.finishing:
                    return  # the end was written meanwhile; the finish says who owns the job
                logger.warning(
                    "lease lost: another attempt owns the job: job %s attempt %d",
                    run.started.job_id,
                    run.started.attempt,
                    extra={"job_id": str(run.started.job_id)},
                )
                run.fenced.set()
                return
            run.progress_dirty = run.progress_dirty and progress is not run.progress
            if cancel:
                run.context.cancel_event.set()

    async def _finish(self, run: AttemptRun, outcome: Outcome, error: BaseException | None) -> bool:
        """Write how the attempt ended; False when another attempt owns the job (no write).

        Final writes go through the finish writer, which frees the lock once they commit.
        """
        started = run.started
        if outcome is Outcome.FENCED:
            return False  # a newer attempt owns the job: write nothing
        if outcome is Outcome.INTERRUPTED:
            return await self._requeue(run, JobEvent.INTERRUPTED, delay_sec=0, count_attempt=False)
        if outcome is Outcome.SUCCEEDED:
            return await self._final(
                run, JobStatus.SUCCEEDED, JobEvent.SUCCEEDED, result_json=run.result_json
            )
        if outcome is Outcome.CANCELED:
            return await self._final(run, JobStatus.CANCELED, JobEvent.CANCELED)
        assert error is not None
        message = f"{type(error).__name__}: {error}"[:ERROR_LIMIT]
        trace = "".join(traceback.format_exception(error))[-TRACEBACK_LIMIT:]
        details = {"error": message, "traceback": trace, "worker_id": self.worker_id}
        run.error = message
        if started.attempt < started.max_attempts and not isinstance(error, PermanentError):
            run.retried = True
            delay_sec = self._backoff_sec(started.attempt)
            run.retry_at = datetime.now(UTC) + timedelta(seconds=delay_sec)
            return await self._requeue(
                run,
                JobEvent.RETRY_SCHEDULED,
                delay_sec=delay_sec,
                count_attempt=True,
                error=message,
                details=details,
            )
        return await self._final(
            run, JobStatus.FAILED, JobEvent.FAILED, error=message, details=details
        )

    async def _final(
        self,
        run: AttemptRun,
        status: JobStatus,
        event: JobEvent,
        *,
        error: str | None = None,
        details: dict[str, Any] | None = None,
        result_json: str | None = None,
    ) -> bool:
        """running -> a final status through the finish writer (batched with other finishes)."""
        request = FinishRequest(
            job_id=run.started.job_id,
            attempt=run.started.attempt,
            status=status,
            event=event,
            progress=run.progress,
            error=error,
            details=details,
            result_json=result_json,
        )
        return await self.finishes.finish(request, run.started.lock_key)

    async def _requeue(
        self,
        run: AttemptRun,
        event: JobEvent,
        *,
        delay_sec: float,
        count_attempt: bool,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        request = RequeueRequest(
            run.started.job_id,
            run.started.attempt,
            event,
            delay_sec=delay_sec,
            count_attempt=count_attempt,
            error=error,
            details={"worker_id": self.worker_id, **(details or {})},
        )
        return await retry_while_unreachable(
            partial(self.manager.requeue, request),
            what=f"requeueing job {run.started.job_id} ({event.value})",
        )

    def _backoff_sec(self, attempt: int) -> float:
        """DL_RETRY_BACKOFF_SEC x attempt, spread by DL_RETRY_JITTER either way."""
        base = self.settings.dl_retry_backoff_sec * attempt
        jitter = self.settings.dl_retry_jitter
        return max(0.0, base * (1 + random.uniform(-jitter, jitter)))
