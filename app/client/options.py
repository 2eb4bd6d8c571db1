"""Where the commands find the server: the global options, kept on the typer context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import typer

from app.client.http import DataloaderClient

JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print the API's JSON answer as it is (for scripts)."),
]
JobIdArg = Annotated[
    str, typer.Argument(metavar="JOB_ID", help="The job's id (a UUID).", show_default=False)
]


@dataclass(frozen=True)
class Options:
    """--url, --token, --timeout and a global --json, as given or from the environment."""

    url: str
    token: str | None = field(repr=False)  # never in a repr or traceback
    timeout_sec: float
    json: bool = False

    def client(self) -> DataloaderClient:
        """A client for this server; close it (or use `with`) when done."""
        return DataloaderClient(self.url, token=self.token, timeout_sec=self.timeout_sec)


def options(ctx: typer.Context) -> Options:
    """The options the top-level callback stored (click hands `obj` down to subcommands)."""
    found = ctx.find_object(Options)
    if found is None:  # a command run without the app's callback, e.g. from a test
        raise RuntimeError("dataloader options missing from the context")
    return found


def wants_json(ctx: typer.Context, flag: bool) -> bool:
    """--json on the command or before it."""
    return flag or options(ctx).json
