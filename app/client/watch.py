"""Follow a job to its end, showing its progress (`--wait`).

The event stream when the server has one, else polling; a live progress bar on a terminal and
one line per change elsewhere (CI logs, pipes).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from app.client.http import (
    DataloaderClient,
    Reply,
    StreamInterrupted,
    StreamUnavailable,
)
from app.client.models import Job
from app.client.output import (
    compact_json,
    err,
    out,
    print_error,
    print_json,
    progress_text,
    status_text,
)
from app.client.render import attempts, retry_note, run_time, waiting_note

POLL_INTERVAL_SEC = 0.5
RECONNECT_DELAY_SEC = 0.5  # after a stream broke off, before opening it again
# The result line after `--wait` is cut here (a result may be a megabyte); --json has it whole.
WAIT_RESULT_WIDTH = 2000


def follow(
    client: DataloaderClient, job_id: str, *, poll_interval_sec: float = POLL_INTERVAL_SEC
) -> Iterator[Reply[Job]]:
    """The job now and after each change, ending with its final state.

    Uses GET /jobs/{id}/stream; a server without it is polled on /status instead, and a
    stream that breaks off is opened again (it always starts with the current state).
    """
    while True:
        try:
            with contextlib.closing(client.stream_job(job_id)) as stream:
                for reply in stream:
                    yield reply
                    if reply.data.finished:
                        return
        except StreamUnavailable:
            break
        except StreamInterrupted:
            pass
        time.sleep(RECONNECT_DELAY_SEC)  # the stream ended before the job did: open it again
    while True:
        reply = client.job(job_id)
        yield reply
        if reply.data.finished:
            return
        time.sleep(poll_interval_sec)


def numbers(progress: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """(processed, total) from a progress value, each None when absent or not a number."""
    if not progress:
        return None, None
    processed, total = progress.get("processed"), progress.get("total")
    as_number = (int, float)
    return (
        float(processed) if isinstance(processed, as_number) else None,
        float(total) if isinstance(total, as_number) and total > 0 else None,
    )


def watch(client: DataloaderClient, job_id: str, console: Console, *, show: bool) -> Reply[Job]:
    """Follow the job until it finishes and return its final state, showing progress if asked."""
    replies = follow(client, job_id)
    if not show:
        return _last(replies)
    if console.is_terminal:
        return _watch_with_bar(replies, console)
    return _watch_with_lines(replies, console)


def _last(replies: Iterator[Reply[Job]]) -> Reply[Job]:
    last: Reply[Job] | None = None
    for last in replies:  # noqa: B007 - only the final state matters
        pass
    assert last is not None  # follow() yields at least once or raises
    return last


def _description(job: Job) -> Text:
    """'running attempt 1/5'; a job that never started shows its status alone.

    A job queued again after a failed attempt says why and when it runs next:
    'queued attempt 1/5  retry at 16:01:05 (in 2.0 s) after ValueError: boom'; one a
    worker held back says what for: 'queued  waiting for rate limit until 16:01:05 (in 3 s)'.
    """
    text = status_text(job.status)
    if job.attempt:
        text += Text(f" attempt {attempts(job)}")
    note = retry_note(job) or waiting_note(job)
    if note:
        text += Text(f"  {note}", style="yellow")
    return text


def _markup(job: Job) -> str:
    """The bar's description: rich markup, since Progress takes a string."""
    return _description(job).markup


def _watch_with_bar(replies: Iterator[Reply[Job]], console: Console) -> Reply[Job]:
    """A rich progress bar: determinate with a total, pulsing without one."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    last: Reply[Job] | None = None
    with Progress(*columns, console=console) as bar:
        task: TaskID | None = None
        for last in replies:
            job = last.data
            processed, total = numbers(job.progress)
            if job.status == "succeeded":
                total = total or processed or 1.0
                processed = total
            if task is None:
                task = bar.add_task(_markup(job), total=total, completed=int(processed or 0))
            else:
                bar.update(task, description=_markup(job), total=total, completed=processed or 0)
    assert last is not None
    return last


def _watch_with_lines(replies: Iterator[Reply[Job]], console: Console) -> Reply[Job]:
    """One timestamped line whenever the status, attempt or progress changes."""
    seen: tuple[str, int, str] | None = None
    last: Reply[Job] | None = None
    for last in replies:
        job = last.data
        state = (job.status, job.attempt, progress_text(job.progress))
        if state != seen:
            seen = state
            line = Text(datetime.now().strftime("%H:%M:%S  ")) + _description(job)
            if state[2]:
                line.append(f"  {state[2]}")
            console.print(line)
    assert last is not None
    return last


def wait_for(client: DataloaderClient, job_id: str, *, as_json: bool) -> int:
    """Follow the job to its end; the exit status: 0 succeeded, 1 otherwise, 130 on Ctrl-C.

    Progress goes to stderr; the outcome to stdout (the final job's JSON with `as_json`).
    Ctrl-C stops watching only: the job carries on on the server.
    """
    try:
        final = watch(client, job_id, err, show=not as_json)
    except KeyboardInterrupt:
        err.print(
            f"interrupted: job {job_id} keeps running on the server; check it with "
            f"`dataloader status {job_id}`, stop it with `dataloader cancel {job_id}`",
            soft_wrap=True,
        )
        return 130
    job = final.data
    if as_json:
        print_json(final.body)
    else:
        out.print(report_line(job))
        if job.result is not None:
            out.print(Text(f"result {compact_json(job.result, WAIT_RESULT_WIDTH)}"), soft_wrap=True)
    if job.status == "succeeded":
        return 0
    print_error(job.error or f"job {job.status}")
    return 1


def report_line(job: Job) -> Text:
    """'job <id> succeeded in 3.2 s (attempt 1/5)' or 'job <id> failed (attempt 1/1)'."""
    took = run_time(job) if job.status == "succeeded" else None
    return Text.assemble(
        f"job {job.job_id} ",
        status_text(job.status),
        f" in {took}" if took else "",
        f" (attempt {attempts(job)})",
    )
