"""An attempt's span: CONSUMER, a child of the context its trigger stored (docs/tracing.md).

Every attempt of a job, retries and re-runs after a lost lease included, is a child of the
trigger's span, so one trace shows the trigger and each attempt. The pipeline runs inside
the span: a job it triggers stores this attempt's context, and its own attempts join the
trace. Without a tracer (tracing off) nothing is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from app.domain.attempts import StartedAttempt
from app.observability.tracing import stored_context

# Attribute names, shared with the scheduler's span (worker.maintenance.scheduler).
JOB_ID = "dataloader.job.id"
QUEUE = "dataloader.job.queue"
TASK = "dataloader.job.task"
ATTEMPT = "dataloader.job.attempt"
MAX_ATTEMPTS = "dataloader.job.max_attempts"
# How the attempt ended: succeeded, failed, retried, canceled, interrupted or fenced.
OUTCOME = "dataloader.job.outcome"
WORKER_ID = "dataloader.worker.id"


@dataclass
class AttemptSpan:
    """The span of one running attempt (or nothing, while tracing is off)."""

    span: Span | None = None

    def end_with(self, outcome: str, error: BaseException | None, message: str | None) -> None:
        """Say how the attempt ended: its outcome, and for a failure (`message`) the error."""
        if self.span is None:
            return
        self.span.set_attribute(OUTCOME, outcome)
        if message is None:
            return
        if error is not None:
            self.span.record_exception(error)
        self.span.set_status(Status(StatusCode.ERROR, message))


@contextmanager
def attempt_span(
    tracer: Tracer | None, started: StartedAttempt, worker_id: str
) -> Iterator[AttemptSpan]:
    """Run the block as the attempt's current span, `job <task>`, ended on the way out."""
    if tracer is None:
        yield AttemptSpan()
        return
    with tracer.start_as_current_span(
        f"job {started.task}",
        context=stored_context(started.traceparent, started.tracestate),
        kind=SpanKind.CONSUMER,
        attributes={
            JOB_ID: str(started.job_id),
            QUEUE: started.queue,
            TASK: started.task,
            ATTEMPT: started.attempt,
            MAX_ATTEMPTS: started.max_attempts,
            WORKER_ID: worker_id,
        },
    ) as span:
        yield AttemptSpan(span)
