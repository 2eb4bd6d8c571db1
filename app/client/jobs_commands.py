"""Job commands: trigger, status, cancel, retry, events and list."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import typer
from rich.text import Text

from app.client.http import Reply
from app.client.models import Job, JobPage
from app.client.options import JobIdArg, JsonFlag, options, wants_json
from app.client.output import count, out, print_json, show, status_text
from app.client.render import attempts, events_table, job_panel, jobs_table
from app.client.watch import wait_for

WaitFlag = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Follow the job with a progress bar until it ends; exit 0 when it succeeded, "
        "1 when it failed, was lost or canceled, 130 on Ctrl-C (the job keeps running).",
    ),
]


def parse_args(args_json: str | None, pairs: list[str]) -> dict[str, Any]:
    """--args '{...}' merged with each --arg key=value (values read as JSON when they parse)."""
    args: dict[str, Any] = {}
    if args_json is not None:
        try:
            parsed = json.loads(args_json)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--args") from None
        if not isinstance(parsed, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--args")
        args.update(parsed)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--arg")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args


def trigger(
    ctx: typer.Context,
    queue: Annotated[
        str, typer.Argument(metavar="QUEUE", help="Queue, e.g. etl.default.", show_default=False)
    ],
    task: Annotated[
        str, typer.Argument(metavar="TASK", help="Pipeline name, e.g. noop.", show_default=False)
    ],
    lock_key: Annotated[
        str,
        typer.Option("--lock-key", help="Jobs sharing it never run at the same time."),
    ],
    args_json: Annotated[
        str | None, typer.Option("--args", help="The job's args as a JSON object.")
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            help="One arg as key=value (repeatable); the value is read as JSON when it "
            "parses (3, true, [1,2]), else as text. Overrides the same key of --args.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="A second trigger with it returns the first job."),
    ] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", help="0..10000, lower runs first.")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts", help="1..100.")] = None,
    partition_key: Annotated[
        str | None, typer.Option("--partition-key", help="Stored and filterable.")
    ] = None,
    lease_ttl_sec: Annotated[
        int | None, typer.Option("--lease-ttl-sec", help="Lease per heartbeat, 1..86400.")
    ] = None,
    available_at: Annotated[
        str | None, typer.Option("--available-at", help="Not before this time (RFC 3339).")
    ] = None,
    producer: Annotated[str | None, typer.Option("--producer", help="Who made the job.")] = None,
    consumer_group: Annotated[
        str | None, typer.Option("--consumer-group", help="Stored and filterable.")
    ] = None,
    concurrency_key: Annotated[
        str | None,
        typer.Option(
            "--concurrency-key",
            help="A concurrency group: at most --concurrency-limit jobs sharing it run at once.",
        ),
    ] = None,
    concurrency_limit: Annotated[
        int | None, typer.Option("--concurrency-limit", help="1..1000, with --concurrency-key.")
    ] = None,
    rate_key: Annotated[
        str | None,
        typer.Option("--rate-key", help="Counted by the queue's per-rate_key limit, if any."),
    ] = None,
    depends_on: Annotated[
        list[str] | None,
        typer.Option(
            "--depends-on",
            metavar="JOB_ID",
            help="A job that must succeed first (repeatable): until then this one waits.",
        ),
    ] = None,
    run_after: Annotated[
        str | None,
        typer.Option(
            "--run-after",
            help="With --depends-on: `succeeded` (the default) or `any` (run once they "
            "ended, whatever the outcome).",
        ),
    ] = None,
    wait: WaitFlag = False,
    json_out: JsonFlag = False,
) -> None:
    """Create a job; with --wait, follow it to its end."""
    as_json = wants_json(ctx, json_out)
    body: dict[str, Any] = {
        "queue": queue,
        "task": task,
        "lock_key": lock_key,
        "args": parse_args(args_json, arg or []),
    }
    optional = {
        "idempotency_key": idempotency_key,
        "priority": priority,
        "max_attempts": max_attempts,
        "partition_key": partition_key,
        "lease_ttl_sec": lease_ttl_sec,
        "available_at": available_at,
        "producer": producer,
        "consumer_group": consumer_group,
        "concurrency_key": concurrency_key,
        "concurrency_limit": concurrency_limit,
        "rate_key": rate_key,
        "depends_on": depends_on or None,
        "run_after": run_after,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    with options(ctx).client() as client:
        reply = client.trigger(body)
        result = reply.data
        if not wait:
            if as_json:
                print_json(reply.body)
            else:
                verb = "created" if result.created else "already exists (same idempotency key)"
                out.print(
                    Text.assemble(f"job {result.job_id} {verb}: ", status_text(result.status))
                )
            return
        if not as_json:
            note = "" if result.created else " (existing job, same idempotency key)"
            out.print(f"job {result.job_id}{note}")
        raise typer.Exit(wait_for(client, result.job_id, as_json=as_json))


def status(
    ctx: typer.Context, job_id: JobIdArg, wait: WaitFlag = False, json_out: JsonFlag = False
) -> None:
    """Show a job: status, attempt, progress, error and timings."""
    as_json = wants_json(ctx, json_out)
    with options(ctx).client() as client:
        if wait:
            raise typer.Exit(wait_for(client, job_id, as_json=as_json))
        show_job(client.job(job_id), as_json)


def cancel(ctx: typer.Context, job_id: JobIdArg, json_out: JsonFlag = False) -> None:
    """Cancel a job: a queued one at once, a running one at its next checkpoint."""
    as_json = wants_json(ctx, json_out)
    with options(ctx).client() as client:
        reply = client.cancel(job_id)
    if as_json:
        print_json(reply.body)
        return
    job = reply.data
    if job.status == "canceled":
        out.print(Text.assemble(f"job {job.job_id} ", status_text("canceled")))
    else:
        out.print(
            Text.assemble(
                f"job {job.job_id} is ",
                status_text(job.status),
                ": cancel requested, the worker stops it at its next checkpoint",
            )
        )


def retry(ctx: typer.Context, job_id: JobIdArg, json_out: JsonFlag = False) -> None:
    """Queue a failed, lost or canceled job again (its attempt count is kept)."""
    as_json = wants_json(ctx, json_out)
    with options(ctx).client() as client:
        reply = client.retry(job_id)
    if as_json:
        print_json(reply.body)
        return
    job = reply.data
    out.print(
        Text.assemble(
            f"job {job.job_id} is ",
            status_text(job.status),
            f" again (attempt {attempts(job)} so far)",
        )
    )


def events(ctx: typer.Context, job_id: JobIdArg, json_out: JsonFlag = False) -> None:
    """Show a job's history, oldest first."""
    as_json = wants_json(ctx, json_out)
    with options(ctx).client() as client:
        reply = client.events(job_id)
    if as_json:
        print_json(reply.body)
        return
    out.print(f"job {reply.data.job_id}: {count(len(reply.data.events), 'event')}")
    show(events_table(reply.data.events))


def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Comma-separated statuses, e.g. failed,lost."),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue")] = None,
    task: Annotated[str | None, typer.Option("--task")] = None,
    lock_key: Annotated[str | None, typer.Option("--lock-key")] = None,
    partition_key: Annotated[str | None, typer.Option("--partition-key")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Jobs per page.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after a previous page.")
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Follow next_cursor to the last page.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """List jobs, newest first."""
    as_json = wants_json(ctx, json_out)
    filters: dict[str, str | int | None] = {
        "status": status,
        "queue": queue,
        "task": task,
        "lock_key": lock_key,
        "partition_key": partition_key,
        "limit": limit,
        "cursor": cursor,
    }
    pages: list[Reply[JobPage]] = []
    with options(ctx).client() as client:
        while True:
            pages.append(client.list_jobs(filters))
            next_cursor = pages[-1].data.next_cursor
            if not all_pages or not next_cursor:
                break
            filters["cursor"] = next_cursor
    if as_json:
        if len(pages) == 1:
            print_json(pages[0].body)
        else:  # one document for the whole listing, in the API's shape
            merged = [job for page in pages for job in msgspec.json.decode(page.body)["jobs"]]
            print_json(msgspec.json.encode({"jobs": merged, "next_cursor": None}))
        return
    jobs: list[Job] = [job for page in pages for job in page.data.jobs]
    if not jobs:
        out.print("no jobs")
        return
    show(jobs_table(jobs))
    more = pages[-1].data.next_cursor
    footer = count(len(jobs), "job")
    if more:
        footer += f"; more with --all, or --cursor {more}"
    out.print(footer, soft_wrap=True)


def show_job(reply: Reply[Job], as_json: bool) -> None:
    """A job's JSON or its panel."""
    if as_json:
        print_json(reply.body)
    else:
        show(job_panel(reply.data))


def register(app: typer.Typer) -> None:
    """Add the job commands to the app."""
    app.command()(trigger)
    app.command()(status)
    app.command()(cancel)
    app.command()(retry)
    app.command()(events)
    app.command("list")(list_jobs)
