"""`dataloader`: the command line over the HTTP API (jobs, queues, schedules).

Exit statuses: 0 success; 1 a watched job failed, was lost or canceled, or the server failed
(5xx); 2 a usage or client error (bad option, 4xx such as an unknown job); 3 the API could not
be reached; 130 Ctrl-C while waiting (the job keeps running).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import httpx
import typer

from app import __version__
from app.client import jobs_commands
from app.client.address import AddressError, url_from_app_settings
from app.client.http import DEFAULT_TIMEOUT_SEC, ApiError, ApiUnreachable
from app.client.options import Options
from app.client.output import out, print_error
from app.client.queues_commands import queues_app
from app.client.schedules_commands import schedules_app
from app.client.workflows_commands import workflows_app

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

app = typer.Typer(
    name="dataloader",
    help="Trigger, watch and manage dataloader jobs, workflows, queues and schedules over the"
    " HTTP API.",
    no_args_is_help=True,
    # A traceback must never print local variables: they hold the token.
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
jobs_commands.register(app)
app.add_typer(queues_app, name="queues")
app.add_typer(schedules_app, name="schedules")
app.add_typer(workflows_app, name="workflows")


def check_url(url: str | None) -> str | None:
    """An http(s) URL with a host, without a trailing slash (None: neither flag nor variable)."""
    if url is None:
        return None
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise typer.BadParameter(str(exc)) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise typer.BadParameter(f"{url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def show_version(value: bool) -> None:
    """--version: print it and stop."""
    if value:
        out.print(f"dataloader {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="DATALOADER_URL",
            callback=check_url,
            help="The API's base URL.",
            show_default="http://APP_HOST:APP_PORT, i.e. http://127.0.0.1:8081 when unset",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="DATALOADER_TOKEN",
            show_envvar=True,
            help="Sent as `Authorization: Bearer <token>`.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", envvar="DATALOADER_TIMEOUT", min=0.1, help="Seconds per request."
        ),
    ] = DEFAULT_TIMEOUT_SEC,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the API's JSON for every command.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=show_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Global options: where the API is and how to authenticate."""
    if url is None:
        try:
            url = url_from_app_settings(os.environ)
        except AddressError as exc:
            raise typer.BadParameter(f"{exc}; pass --url or set DATALOADER_URL") from None
    ctx.obj = Options(url=url, token=token or None, timeout_sec=timeout, json=json_out)


def main() -> None:
    """Console script entry point: run the app and turn client errors into exit statuses."""
    try:
        app(prog_name="dataloader")
    except ApiUnreachable as exc:
        print_error(exc.message)
        sys.exit(EXIT_UNREACHABLE)
    except ApiError as exc:
        print_error(exc.detail)
        sys.exit(EXIT_USAGE if 400 <= exc.status_code < 500 else EXIT_FAILED)
