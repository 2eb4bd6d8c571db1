"""`dataloader schedules`: list, show, enable, disable and run cron schedules."""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer
from rich.text import Text

from app.client.http import Reply
from app.client.models import SchedulePage
from app.client.options import JsonFlag, options, wants_json
from app.client.output import out, print_json, show, status_text, when
from app.client.render import schedule_panel, schedules_table
from app.client.watch import wait_for

NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="The schedule's name.", show_default=False)
]
PAGE_SIZE = 500  # the API's largest page

schedules_app = typer.Typer(help="Cron schedules: list, show, enable, disable, run now.")


@schedules_app.callback(invoke_without_command=True)
def schedules(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List schedules (the default), or act on one."""
    if ctx.invoked_subcommand is None:
        show_schedules(ctx, wants_json(ctx, json_out))


@schedules_app.command("list")
def list_schedules(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List every schedule by name: cron, next and last run."""
    show_schedules(ctx, wants_json(ctx, json_out))


@schedules_app.command("show")
def show_schedule(ctx: typer.Context, name: NameArg, json_out: JsonFlag = False) -> None:
    """One schedule: template, state, last job and the next fire times."""
    with options(ctx).client() as client:
        reply = client.schedule(name)
    if wants_json(ctx, json_out):
        print_json(reply.body)
    else:
        show(schedule_panel(reply.data))


@schedules_app.command()
def enable(ctx: typer.Context, name: NameArg, json_out: JsonFlag = False) -> None:
    """Enable a schedule; it fires next at the first match after now."""
    set_enabled(ctx, name, True, wants_json(ctx, json_out))


@schedules_app.command()
def disable(ctx: typer.Context, name: NameArg, json_out: JsonFlag = False) -> None:
    """Disable a schedule; jobs it already created are not touched."""
    set_enabled(ctx, name, False, wants_json(ctx, json_out))


@schedules_app.command()
def run(
    ctx: typer.Context,
    name: NameArg,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job it created, as `trigger --wait`.")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Create the schedule's job now (enabled or not; fire times do not change)."""
    as_json = wants_json(ctx, json_out)
    with options(ctx).client() as client:
        reply = client.run_schedule(name)
        job = reply.data.job
        if wait:
            if not as_json:
                out.print(f"schedule {name}: job {job.job_id}")
            raise typer.Exit(wait_for(client, job.job_id, as_json=as_json))
    if as_json:
        print_json(reply.body)
    else:
        out.print(Text.assemble(f"schedule {name}: job {job.job_id} ", status_text(job.status)))


def show_schedules(ctx: typer.Context, as_json: bool) -> None:
    """Every schedule (all pages), as a table or as the API's JSON."""
    pages: list[Reply[SchedulePage]] = []
    after: str | None = None
    with options(ctx).client() as client:
        while True:
            pages.append(client.schedules(after=after, limit=PAGE_SIZE))
            after = pages[-1].data.next_after
            if after is None:
                break
    if as_json:
        if len(pages) == 1:
            print_json(pages[0].body)
        else:
            merged = [s for page in pages for s in msgspec.json.decode(page.body)["schedules"]]
            print_json(msgspec.json.encode({"schedules": merged, "next_after": None}))
        return
    found = [schedule for page in pages for schedule in page.data.schedules]
    if found:
        show(schedules_table(found))
    else:
        out.print("no schedules")


def set_enabled(ctx: typer.Context, name: str, enabled: bool, as_json: bool) -> None:
    """Enable or disable, then say when it fires next."""
    with options(ctx).client() as client:
        reply = client.set_schedule_enabled(name, enabled)
    if as_json:
        print_json(reply.body)
        return
    schedule = reply.data
    if schedule.enabled:
        out.print(f"schedule {name} enabled; next run {when(schedule.next_run_at)}")
    else:
        out.print(f"schedule {name} disabled")
