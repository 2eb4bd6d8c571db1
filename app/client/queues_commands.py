"""`dataloader queues`: list queues, pause and resume one, show and set its rate limits and
its fairness."""

from __future__ import annotations

from typing import Annotated

import typer

from app.client.models import QueueLimits, RateLimit
from app.client.options import JsonFlag, options, wants_json
from app.client.output import out, print_json, show
from app.client.rate_limits import RateSpecError, limits_panel, parse_rate
from app.client.render import fairness_line, queue_line, queues_table

QueueArg = Annotated[
    str, typer.Argument(metavar="QUEUE", help="The queue's name.", show_default=False)
]

queues_app = typer.Typer(
    help="Queues: depth, state, throughput, rate limits and fairness; pause and resume.",
    no_args_is_help=False,
)


def parse_option(name: str, value: str | None) -> RateLimit | None:
    """An option's COUNT/PERIOD, or a usage error (exit 2) naming the option."""
    if value is None:
        return None
    try:
        return parse_rate(value)
    except RateSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


@queues_app.callback(invoke_without_command=True)
def queues(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List queues (the default), pause/resume one, or show/set its rate limits."""
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


@queues_app.command()
def limits(
    ctx: typer.Context,
    queue: QueueArg,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            metavar="COUNT/PERIOD",
            help="At most COUNT starts of the queue's jobs per PERIOD, all jobs together.",
        ),
    ] = None,
    per_rate_key: Annotated[
        str | None,
        typer.Option(
            "--per-rate-key",
            metavar="COUNT/PERIOD",
            help="At most COUNT starts per PERIOD for the jobs of each rate_key.",
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove both limits.", show_default=False)
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Show a queue's fleet-wide start-rate limits, or set them.

    PERIOD takes ms, s, m or h (20/1s, 5/500ms, 100/1m); a bare number is seconds. Setting
    one of --start and --per-rate-key keeps the other as the server has it now (read first,
    then written: two people setting limits of one queue at once may undo each other's
    other limit). --clear removes both.
    """
    as_json = wants_json(ctx, json_out)
    start_limit = parse_option("--start", start)
    key_limit = parse_option("--per-rate-key", per_rate_key)
    if clear and (start_limit or key_limit):
        raise typer.BadParameter(
            "--clear removes both limits; leave out --start and --per-rate-key",
            param_hint="--clear",
        )
    with options(ctx).client() as client:
        if clear:
            reply = client.set_queue_limits(queue, QueueLimits())
        elif start_limit or key_limit:
            current = client.queue_limits(queue).data
            wanted = QueueLimits(
                start=start_limit or current.start,
                per_rate_key=key_limit or current.per_rate_key,
            )
            reply = client.set_queue_limits(queue, wanted)
        else:
            reply = client.queue_limits(queue)
    if as_json:
        print_json(reply.body)
    else:
        show(limits_panel(queue, reply.data))


@queues_app.command()
def fairness(
    ctx: typer.Context,
    queue: QueueArg,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="FIELD",
            help="Start the queue's jobs round-robin over this field: partition_key.",
        ),
    ] = None,
    off: Annotated[
        bool,
        typer.Option("--off", help="Start them in priority order only.", show_default=False),
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Show whether a queue is fair between tenants, or make it fair (--by) or not (--off).

    A fair queue starts its due jobs round-robin over their partition_key (jobs without
    one are one more tenant), within each priority. It applies to jobs triggered from
    then on; queued jobs keep their order.
    """
    as_json = wants_json(ctx, json_out)
    if off and by is not None:
        raise typer.BadParameter(
            "--off makes the queue not fair; leave out --by", param_hint="--off"
        )
    with options(ctx).client() as client:
        if off or by is not None:
            reply = client.set_queue_fairness(queue, by)
        else:
            reply = client.queue_fairness(queue)
    if as_json:
        print_json(reply.body)
    else:
        out.print(fairness_line(queue, reply.data))


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
