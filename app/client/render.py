"""Human views of jobs, events, queues and schedules (tables and key/value panels)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from app.client.models import (
    Job,
    JobEvent,
    Queue,
    QueueFairness,
    Schedule,
    Workflow,
    WorkflowSummary,
)
from app.client.output import (
    compact_json,
    duration,
    fields_table,
    list_table,
    local_time,
    progress_text,
    relative,
    sparkline,
    status_text,
    when,
)
from app.client.rate_limits import limits_text

ERROR_WIDTH = 60
# A result is shown on one line, cut here; `--json` prints it whole.
RESULT_WIDTH = 300


def attempts(job: Job) -> str:
    """'2/5': attempts made out of the budget."""
    return f"{job.attempt}/{job.max_attempts}" if job.max_attempts is not None else str(job.attempt)


def retry_note(job: Job) -> str | None:
    """'retry at 16:01:05 (in 2.0 s) after ValueError: boom' for a job waiting to run again.

    A queued job that has used an attempt and kept its error failed that attempt; a job
    queued anew by hand or after a shutdown carries no error.
    """
    if job.status != "queued" or not job.attempt or not job.error:
        return None
    error = " ".join(job.error.split())
    error = error if len(error) <= ERROR_WIDTH else error[: ERROR_WIDTH - 1] + "…"
    if job.available_at is None:
        return f"after {error}"
    moment = job.available_at.astimezone().strftime("%H:%M:%S")
    return f"retry at {moment} ({relative(job.available_at)}) after {error}"


# dl_jobs.waiting_for (the server's WaitReason) as a sentence's object.
WAIT_REASONS = {
    "lock_key": "its lock_key",
    "concurrency_group": "its concurrency group",
    "rate_limit": "rate limit",
    "queue_paused": "queue resume",
    "trigger_open": "a joining trigger's commit",
}


def waiting_note(job: Job) -> str | None:
    """'waiting for rate limit until 16:01:05 (in 59 min)' for a queued job a worker held back.

    A paused queue's job has no time to name: it waits for the resume.
    """
    if job.status != "queued" or not job.waiting_for:
        return None
    note = f"waiting for {WAIT_REASONS.get(job.waiting_for, job.waiting_for)}"
    if job.waiting_for == "queue_paused" or job.available_at is None:
        return note
    moment = job.available_at.astimezone().strftime("%H:%M:%S")
    return f"{note} until {moment} ({relative(job.available_at)})"


def concurrency_group(job: Job) -> str | None:
    """'partner-api (at most 3 at once)', or None for a job outside any group."""
    if job.concurrency_key is None:
        return None
    return f"{job.concurrency_key} (at most {job.concurrency_limit} at once)"


def run_time(job: Job) -> str | None:
    """How long the job ran (so far, while it runs)."""
    if job.started_at is None:
        return None
    end = job.finished_at or datetime.now(UTC)
    suffix = "" if job.finished_at else " so far"
    return duration((end - job.started_at).total_seconds()) + suffix


def job_panel(job: Job) -> Table:
    """Every field of one job worth reading, one per line."""
    status = status_text(job.status)
    if job.cancel_requested and not job.finished:
        status += Text(" (cancel requested)", style="yellow")
    waiting = waiting_note(job)
    if waiting:
        status += Text(f", {waiting}", style="yellow")
    lease = None
    if job.status == "running" and job.lease_expires_at is not None:
        lease = relative(job.lease_expires_at).replace("ago", "ago (expired)")
    return fields_table(
        [
            ("job_id", job.job_id),
            ("status", status),
            ("queue", job.queue),
            ("task", job.task),
            ("lock_key", job.lock_key),
            ("concurrency", concurrency_group(job)),
            ("rate_key", job.rate_key),
            ("workflow", _workflow_step(job)),
            ("depends on", _depends_on(job)),
            ("canceled by", job.canceled_by),
            ("attempt", attempts(job)),
            ("progress", progress_text(job.progress) or None),
            ("error", Text(job.error, style="red") if job.error else None),
            ("result", None if job.result is None else compact_json(job.result, RESULT_WIDTH)),
            ("args", compact_json(job.args, 300)),
            ("idempotency_key", job.idempotency_key),
            ("partition_key", job.partition_key),
            ("producer", job.producer),
            ("consumer_group", job.consumer_group),
            ("priority", None if job.priority is None else str(job.priority)),
            ("worker", job.worker_id),
            ("created", when(job.created_at)),
            ("available", _available(job)),
            ("started", when(job.started_at) if job.started_at else None),
            ("finished", when(job.finished_at) if job.finished_at else None),
            ("run time", run_time(job)),
            ("heartbeat", relative(job.heartbeat_at) if job.heartbeat_at else None),
            ("lease expires", lease),
        ]
    )


def _workflow_step(job: Job) -> str | None:
    """'3fa8... (step load)' for a step of a workflow."""
    if job.workflow_id is None:
        return None
    return f"{job.workflow_id} (step {job.step_name})"


def _depends_on(job: Job) -> str | None:
    """The parents' ids, and what it needs of them when that is not success."""
    if not job.depends_on:
        return None
    after = "" if job.run_after == "succeeded" else f" (runs after they end: {job.run_after})"
    return ", ".join(job.depends_on) + after


def workflow_table(workflow: Workflow) -> Table:
    """One row per step: status, attempts, what it waits for, when it ran, why it failed."""
    with_errors = any(step.error for step in workflow.steps)
    headers = ["STEP", "STATUS", "ATTEMPT", "DEPENDS ON", "STARTED", "RUN TIME", "JOB ID"]
    table = list_table(*headers, *(["ERROR"] if with_errors else []))
    for step in workflow.steps:
        run = None
        if step.started_at is not None:
            end = step.finished_at or datetime.now(UTC)
            run = duration((end - step.started_at).total_seconds())
        parents = ", ".join(step.depends_on)
        row: list[RenderableType] = [
            step.name,
            status_text(step.status),
            f"{step.attempt}/{step.max_attempts}" if step.max_attempts else str(step.attempt),
            parents if step.run_after == "succeeded" else f"{parents} (any outcome)",
            local_time(step.started_at),
            run or "",
            step.job_id,
        ]
        if with_errors:
            row.append(Text(_cut(step.error or "", ERROR_WIDTH), style="red"))
        table.add_row(*row)
    return table


def workflows_table(workflows: list[WorkflowSummary]) -> Table:
    """One row per workflow: status, steps per status, when it was created."""
    table = list_table("WORKFLOW ID", "NAME", "STATUS", "STEPS", "CREATED")
    table.columns[0].no_wrap = True
    for workflow in workflows:
        steps = ", ".join(f"{n} {status}" for status, n in workflow.counts.items())
        table.add_row(
            workflow.workflow_id,
            workflow.name,
            status_text(workflow.status),
            steps,
            local_time(workflow.created_at),
        )
    return table


def _available(job: Job) -> str | None:
    """Shown only when the job waits for a later time than its creation."""
    if job.available_at is None or job.created_at is None or job.available_at <= job.created_at:
        return None
    return when(job.available_at)


def jobs_table(jobs: list[Job]) -> Table:
    """One row per job, full ids; an ERROR column when some job has one."""
    with_errors = any(job.error for job in jobs)
    headers = ["JOB ID", "STATUS", "QUEUE", "TASK", "LOCK KEY", "ATTEMPT", "PROGRESS", "CREATED"]
    table = list_table(*headers, *(["ERROR"] if with_errors else []))
    table.columns[0].no_wrap = True
    for job in jobs:
        row: list[RenderableType] = [
            job.job_id,
            status_text(job.status),
            job.queue,
            job.task,
            job.lock_key,
            attempts(job),
            progress_text(job.progress),
            relative(job.created_at) if job.created_at else "",
        ]
        if with_errors:
            row.append(Text(_cut(job.error or "", ERROR_WIDTH), style="red"))
        table.add_row(*row)
    return table


def events_table(events: list[JobEvent]) -> Table:
    """A job's history, oldest first."""
    table = list_table("#", "AT", "EVENT", "ATTEMPT", "DETAILS")
    for event in events:
        details = compact_json(event.details, 120) if event.details else ""
        table.add_row(
            str(event.id),
            local_time(event.at),
            status_text(event.event),
            str(event.attempt),
            details,
        )
    return table


def queues_table(queues: list[Queue]) -> Table:
    """Depth, state, age of the oldest waiting job, rate limits and the last hour per queue."""
    table = list_table(
        "QUEUE",
        "STATE",
        "QUEUED",
        "RUNNING",
        "OLDEST",
        "LIMITS",
        "LAST HOUR",
        "PER MINUTE (60 MIN)",
    )
    for queue in queues:
        table.add_row(
            queue.queue,
            state_text(queue),
            str(queue.queued),
            str(queue.running),
            duration(queue.oldest_queued_age_sec)
            if queue.oldest_queued_age_sec is not None
            else "-",
            limits_text(queue.limits),
            last_hour(queue),
            sparkline(m.succeeded + m.failed + m.canceled + m.lost for m in queue.throughput),
        )
    return table


def state_text(queue: Queue) -> Text:
    """'active' or 'paused', and ', fair' for a queue fair between its tenants."""
    text = Text("paused", style="yellow") if queue.paused else Text("active", style="green")
    if queue.fairness.by is not None:
        text.append(", fair")
    return text


def fairness_line(queue: str, fairness: QueueFairness) -> str:
    """One line saying in which order the queue starts its jobs."""
    if fairness.by is None:
        return f"{queue}: jobs start in priority order, oldest first"
    return f"{queue}: fair by {fairness.by} (round-robin over its values, within a priority)"


def last_hour(queue: Queue) -> Text:
    """'10 ok  1 failed' (only the non-zero counts; '-' when nothing finished)."""
    styles = {"succeeded": "green", "failed": "red", "canceled": "yellow", "lost": "magenta"}
    labels = {"succeeded": "ok"}
    text = Text()
    for status, style in styles.items():
        count = queue.finished_last_hour.get(status, 0)
        if count:
            text.append(f"{' ' if text else ''}{count} {labels.get(status, status)}", style=style)
    return text if text else Text("-")


def queue_line(queue: Queue) -> Text:
    """One line after pause/resume: the queue, its state and its depth."""
    state = Text("paused", style="yellow") if queue.paused else Text("active", style="green")
    return Text.assemble(
        f"queue {queue.queue} is ", state, f" ({queue.queued} queued, {queue.running} running)"
    )


def schedules_table(schedules: list[Schedule]) -> Table:
    """One row per schedule, by name."""
    with_errors = any(s.last_error for s in schedules)
    headers = ["NAME", "ENABLED", "CRON", "TIMEZONE", "QUEUE", "TASK", "NEXT RUN", "LAST RUN"]
    table = list_table(*headers, *(["LAST ERROR"] if with_errors else []))
    for schedule in schedules:
        row: list[RenderableType] = [
            schedule.name,
            Text("yes", style="green") if schedule.enabled else Text("no", style="yellow"),
            schedule.cron,
            schedule.timezone,
            schedule.queue,
            schedule.task,
            when(schedule.next_run_at) if schedule.enabled and schedule.next_run_at else "-",
            relative(schedule.last_run_at) if schedule.last_run_at else "-",
        ]
        if with_errors:
            row.append(Text(_cut(schedule.last_error or "", ERROR_WIDTH), style="red"))
        table.add_row(*row)
    return table


def schedule_panel(schedule: Schedule) -> RenderableType:
    """One schedule: its template, its state and its next fire times."""
    panel = fields_table(
        [
            ("name", schedule.name),
            ("enabled", "yes" if schedule.enabled else Text("no", style="yellow")),
            ("cron", f"{schedule.cron}  ({schedule.timezone})"),
            ("queue", schedule.queue),
            ("task", schedule.task),
            ("lock_key", schedule.lock_key),
            ("args", compact_json(schedule.args, 300)),
            ("priority", None if schedule.priority is None else str(schedule.priority)),
            ("max_attempts", None if schedule.max_attempts is None else str(schedule.max_attempts)),
            (
                "lease_ttl_sec",
                None if schedule.lease_ttl_sec is None else str(schedule.lease_ttl_sec),
            ),
            ("source", schedule.source),
            ("next run", when(schedule.next_run_at) if schedule.enabled else "- (disabled)"),
            ("last run", when(schedule.last_run_at) if schedule.last_run_at else "never"),
            ("last job", schedule.last_job_id),
            ("last error", Text(schedule.last_error, style="red") if schedule.last_error else None),
            ("schedule_id", schedule.schedule_id),
            ("created", when(schedule.created_at) if schedule.created_at else None),
            ("updated", when(schedule.updated_at) if schedule.updated_at else None),
        ]
    )
    if not schedule.upcoming:
        return panel
    upcoming = Text("upcoming", style="bold")
    for moment in schedule.upcoming:
        upcoming.append(f"\n  {when(moment)}", style="")
    return Group(panel, upcoming)


def _cut(text: str, width: int) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"
