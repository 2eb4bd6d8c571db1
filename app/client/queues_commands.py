"""`dataloader queues`: list queues, pause and resume one."""

from __future__ import annotations

from typing import Annotated

import typer

from app.client.options import JsonFlag, options, wants_json
from app.client.output import out, print_json, show
from app.client.render import queue_line, queues_table

QueueArg = Annotated[
    str, typer.Argument(metavar="QUEUE", help="The queue's name.", show_default=False)
]

queues_app = typer.Typer(
    help="Queues: depth, state and throughput; pause and resume.", no_args_is_help=False
)


@queues_app.callback(invoke_without_command=True)
def queues(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List queues (the default), or pause/resume one."""
    if ctx.invoked_subcommand is None:
        show_queues(ctx, wants_json(ctx, json_out))


@queues_app.command("list")
def list_queues(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List queues: queued, running, oldest waiting job, last hour, per minute."""
    show_queues(ctx, wants_json(ctx, json_out))


@queues_app.command()
def pause(ctx: typer.Context, queue: QueueArg, json_out: JsonFlag = False) -> None:
    """Pause a queue: workers start no new jobs from it; running jobs go on."""
    set_paused(ctx, queue, True, wants_json(ctx, json_out))


@queues_app.command()
def resume(ctx: typer.Context, queue: QueueArg, json_out: JsonFlag = False) -> None:
    """Resume a paused queue."""
    set_paused(ctx, queue, False, wants_json(ctx, json_out))


def show_queues(ctx: typer.Context, as_json: bool) -> None:
    """The queue table, or the API's JSON."""
    with options(ctx).client() as client:
        reply = client.queues()
    if as_json:
        print_json(reply.body)
    elif not reply.data.queues:
        out.print("no queues")
    else:
        show(queues_table(reply.data.queues))


def set_paused(ctx: typer.Context, queue: str, paused: bool, as_json: bool) -> None:
    """Pause or resume, then show the queue's state."""
    with options(ctx).client() as client:
        reply = client.set_queue_paused(queue, paused)
    if as_json:
        print_json(reply.body)
    else:
        out.print(queue_line(reply.data))
