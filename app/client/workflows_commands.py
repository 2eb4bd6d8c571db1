"""`dataloader workflows`: create a DAG of steps at once, show it, cancel it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from app.client.models import Workflow
from app.client.options import JsonFlag, options, wants_json
from app.client.output import count, out, print_json, show, status_text
from app.client.render import workflow_table, workflows_table

WorkflowIdArg = Annotated[
    str, typer.Argument(metavar="WORKFLOW_ID", help="The workflow's id (a UUID).")
]
POLL_SEC = 0.5
# Exit statuses of `create --wait`, as `trigger --wait` has them.
EXIT_SUCCEEDED, EXIT_FAILED = 0, 1

workflows_app = typer.Typer(help="Workflows: a DAG of steps created at once; list, show, cancel.")


@workflows_app.command()
def create(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help='The workflow as JSON ({"name": .., "steps": [..]}, the body of POST '
            "/api/v1/workflows); - reads it from stdin.",
        ),
    ],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Follow it until every step ended; exit 0 when all succeeded, 1 otherwise.",
        ),
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Run again with the same file and key, it finds the workflow this created"
            " instead of making another (overrides the file's idempotency_key).",
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Create every step of a workflow in one transaction."""
    as_json = wants_json(ctx, json_out)
    body = _read_body(path)
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    with options(ctx).client() as client:
        reply = client.create_workflow(body)
        created = reply.data
        if as_json and not wait:
            print_json(reply.body)
            return
        if not as_json:
            made = "created" if created.created else "found (created before with this key)"
            out.print(
                f"workflow {created.workflow_id} ({created.name}) {made}: "
                f"{count(len(created.steps), 'step')}"
            )
        if not wait:
            return
        while True:
            shown = client.workflow(created.workflow_id)
            if shown.data.status != "active":
                break
            time.sleep(POLL_SEC)
    _print_workflow(shown.body, shown.data, as_json)
    raise typer.Exit(EXIT_SUCCEEDED if shown.data.status == "succeeded" else EXIT_FAILED)


@workflows_app.command("list")
def list_workflows(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only workflows of this name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Workflows per page.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue after a previous page.")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """List workflows, newest first, with their status and steps per status."""
    with options(ctx).client() as client:
        reply = client.list_workflows({"name": name, "limit": limit, "cursor": cursor})
    if wants_json(ctx, json_out):
        print_json(reply.body)
        return
    page = reply.data
    if not page.workflows:
        out.print("no workflows")
        return
    show(workflows_table(page.workflows))
    footer = count(len(page.workflows), "workflow")
    if page.next_cursor:
        footer += f"; more with --cursor {page.next_cursor}"
    out.print(footer, soft_wrap=True)


@workflows_app.command("show")
def show_workflow(
    ctx: typer.Context, workflow_id: WorkflowIdArg, json_out: JsonFlag = False
) -> None:
    """A workflow: every step with its status, attempts, parents and timings."""
    with options(ctx).client() as client:
        reply = client.workflow(workflow_id)
    _print_workflow(reply.body, reply.data, wants_json(ctx, json_out))


@workflows_app.command()
def cancel(ctx: typer.Context, workflow_id: WorkflowIdArg, json_out: JsonFlag = False) -> None:
    """Cancel the steps that have not finished (running ones at their next checkpoint)."""
    with options(ctx).client() as client:
        reply = client.cancel_workflow(workflow_id)
    if wants_json(ctx, json_out):
        print_json(reply.body)
        return
    done = reply.data
    out.print(
        f"workflow {done.workflow_id}: {count(done.canceled, 'step')} canceled, "
        f"{count(done.cancel_requested, 'running step')} asked to stop"
    )


def _read_body(path: str) -> dict[str, Any]:
    """The JSON object in FILE (or stdin for -)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="FILE") from None
    if not isinstance(body, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="FILE")
    return body


def _print_workflow(body: bytes, workflow: Workflow, as_json: bool) -> None:
    if as_json:
        print_json(body)
        return
    counts = ", ".join(f"{n} {status}" for status, n in workflow.counts.items())
    out.print(
        Text.assemble(
            f"workflow {workflow.workflow_id} ({workflow.name}): ",
            status_text(workflow.status),
            f" ({counts})",
        )
    )
    show(workflow_table(workflow))
