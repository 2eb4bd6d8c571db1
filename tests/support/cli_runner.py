"""The real `dataloader` console script in a subprocess, run the way a terminal would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import PROJECT_ROOT

RUN_TIMEOUT_SEC = 60.0
WORKER_QUEUE = "etl.default"  # served by the CLI tests' module worker
IDLE_QUEUE = "cli.idle"  # served by nobody: jobs there stay queued


def dataloader_command() -> list[str]:
    """The installed console script (`make install`), else the same app via `-m`."""
    script = Path(sys.executable).with_name("dataloader")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.client"]


def cli_env(url: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without DATALOADER_* or terminal overrides, aimed at `url`.

    With `url` None neither DATALOADER_URL nor APP_HOST/APP_PORT is inherited: the client
    finds the API from what `extra` sets, or at its default address.
    """
    dropped = ("DATALOADER_", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    if url is None:
        dropped += ("APP_HOST", "APP_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    if url is not None:
        env["DATALOADER_URL"] = url
    env.update({"PYTHONUNBUFFERED": "1", **(extra or {})})
    return env


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class CliResult:
    """How a `dataloader` run ended and what it printed."""

    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as one JSON document."""
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (
            f"dataloader {' '.join(self.args)} -> {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


@dataclass
class Cli:
    """Runs `dataloader` against one server URL (None: no DATALOADER_URL, see cli_env)."""

    url: str | None

    async def start(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        """Start `dataloader *args` with stdout and stderr piped, as from a terminal.

        SIGINT is restored to its default in the child: a test run started in the background
        by a non-interactive shell ignores SIGINT, the child would inherit that, and Python
        then never raises KeyboardInterrupt for the Ctrl-C the tests send.
        """
        return await asyncio.create_subprocess_exec(
            *dataloader_command(),
            *args,
            cwd=PROJECT_ROOT,
            env=cli_env(self.url, env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_default_sigint,
        )

    async def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = RUN_TIMEOUT_SEC
    ) -> CliResult:
        """Run `dataloader *args` to its end (killed after `timeout`)."""
        process = await self.start(*args, env=env)
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.send_signal(signal.SIGKILL)
            await process.wait()
            raise
        assert process.returncode is not None
        return CliResult(args, process.returncode, stdout.decode(), stderr.decode())

    async def ok(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        """Run it and require exit status 0."""
        result = await self(*args, env=env)
        assert result.returncode == 0, str(result)
        return result
