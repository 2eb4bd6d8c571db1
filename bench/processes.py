"""Worker and API subprocesses: started with their output in log files, always stopped.

`Processes` is a context manager; leaving it (normally or by an exception) sends SIGTERM to
everything still running, waits, and SIGKILLs whatever outlives the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from app.db.migrate import PROJECT_ROOT
from app.devserver.embedded_postgres import free_port
from app.settings import Settings
from bench.http_load import HttpConnection

PROJECT_WORKER = "worker.main:factory"
PEER_WORKER = "bench.peer_worker:factory"
WORKER_READY = "serving"  # both worker factories log a line with this word once set up
STOP_TIMEOUT_SEC = 40.0  # the project worker drains for DL_SHUTDOWN_TIMEOUT_SEC (30 s)
START_TIMEOUT_SEC = 60.0


class ProcessFailed(RuntimeError):
    """A subprocess died or did not become ready."""


@dataclass
class Managed:
    """One subprocess and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether it has not exited."""
        return self.process.poll() is None

    def log(self) -> str:
        """Everything it wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        """Its last log lines, for error messages."""
        text = "\n".join(self.log().splitlines()[-lines:])
        return f"--- {self.name} (pid {self.pid}, exit {self.process.poll()}) ---\n{text}"


@dataclass
class ApiServer:
    """A running `python -m app serve`."""

    managed: Managed
    host: str
    port: int
    workers: int  # processes actually serving (1 when `--workers` is not supported)
    workers_flag: bool


def child_env(**values: str) -> dict[str, str]:
    """The caller's environment minus every service setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


class Processes:
    """Starts subprocesses and guarantees they are stopped."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Managed] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Managed:
        """Start `argv` in the project folder with its output in `<log_dir>/<name>.log`."""
        log_path = self.log_dir / f"{name}-{len(self.started) + 1}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        managed = Managed(name, process, log_path)
        self.started.append(managed)
        return managed

    def start_worker(
        self,
        dsn: str,
        name: str,
        *,
        batch_size: int,
        queue: str = "bench",
        concurrency: int = 1,
        factory: str = PROJECT_WORKER,
    ) -> Managed:
        """`python -m pgqueuer run <factory> --batch-size B` on `dsn`."""
        env = child_env(
            DATABASE_URL=dsn,
            WORKER_ID=name,
            WORKERS_JSON=json.dumps([{"queue": queue, "concurrency": concurrency}]),
        )
        argv = [sys.executable, "-m", "pgqueuer", "run", factory, "--batch-size", str(batch_size)]
        return self.start(name, argv, env)

    async def wait_ready(self, managed: Managed, limit_sec: float = START_TIMEOUT_SEC) -> None:
        """Wait until a worker logged its start-up line."""
        deadline = time.monotonic() + limit_sec
        while WORKER_READY not in managed.log():
            self.check_alive(managed)
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{managed.name} not ready in {limit_sec}s\n{managed.tail()}")
            await asyncio.sleep(0.05)

    async def start_api(self, dsn: str, workers: int) -> ApiServer:
        """`python -m app serve [--workers K]`; waits for /ready. Falls back to no flag."""
        use_flag = True
        while True:
            port = free_port()
            argv = [sys.executable, "-m", "app", "serve"]
            if use_flag:
                argv += ["--workers", str(workers)]
            env = child_env(DATABASE_URL=dsn, APP_HOST="127.0.0.1", APP_PORT=str(port))
            managed = self.start("api", argv, env)
            try:
                await self._wait_http_ready(managed, port)
            except ProcessFailed:
                if use_flag and "unrecognized arguments" in managed.log():
                    use_flag = False  # `serve --workers` not available: one process
                    continue
                raise
            return ApiServer(managed, "127.0.0.1", port, workers if use_flag else 1, use_flag)

    async def _wait_http_ready(self, managed: Managed, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SEC
        async with HttpConnection("127.0.0.1", port) as connection:
            while True:
                self.check_alive(managed)
                with contextlib.suppress(OSError, ConnectionError, asyncio.IncompleteReadError):
                    if (await connection.request("GET", "/ready")).status == 200:
                        return
                if time.monotonic() > deadline:
                    self.stop(managed)
                    raise ProcessFailed(f"API not ready in {START_TIMEOUT_SEC}s\n{managed.tail()}")
                await asyncio.sleep(0.05)

    @staticmethod
    def check_alive(*managed: Managed) -> None:
        """Raise with its log tail if any of them exited."""
        for item in managed:
            if not item.alive():
                raise ProcessFailed(f"{item.name} exited unexpectedly\n{item.tail()}")

    @staticmethod
    def stop(*managed: Managed, timeout: float = STOP_TIMEOUT_SEC) -> None:
        """SIGTERM, wait, SIGKILL what outlives `timeout`."""
        for item in managed:
            if item.alive():
                with contextlib.suppress(ProcessLookupError):
                    item.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for item in managed:
            try:
                item.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                item.process.kill()
                item.process.wait(timeout=10)

    def stop_all(self) -> None:
        """Stop every process this object started."""
        self.stop(*self.started)
