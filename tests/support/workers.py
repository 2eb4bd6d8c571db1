"""Real `pgq run worker.main:factory` processes for end-to-end tests.

`worker_fleet()` starts worker subprocesses against one test database, writes each one's
output to its own log file, and stops them all at teardown (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.devserver.supervisor import WORKER_RESTART_ARGS as RESTART_ARGS
from tests.support.waiting import wait_until

E2E_PIPELINE_MODULES = "tests.support.e2e_pipelines"

# Small periods so leases, reaping and retries happen within seconds.
FAST_ENV: dict[str, str] = {
    "DL_HEARTBEAT_SEC": "0.5",
    "DL_DEFAULT_LEASE_TTL_SEC": "30",
    "DL_REAPER_PERIOD_SEC": "0.5",
    "DL_CLAIM_BACKOFF_SEC": "0.5",
    "DL_RETRY_BACKOFF_SEC": "1",
    "DL_RETRY_JITTER": "0",
    "DL_SHUTDOWN_TIMEOUT_SEC": "5",
    # JSON: a comma-separated value is rejected by the settings (see the report).
    "DL_PIPELINE_MODULES": json.dumps([E2E_PIPELINE_MODULES]),
}
# pgqueuer re-picks a dead worker's row after this; small so leaked slots come back soon.
# --restart-on-failure as in production: a worker that loses the database starts over.
PGQ_ARGS: tuple[str, ...] = (
    "--heartbeat-timeout",
    "2",
    "--dequeue-timeout",
    "2",
    *RESTART_ARGS,
)

READY_LINE = "serving"
STOP_TIMEOUT_SEC = 15.0


@dataclass
class WorkerProcess:
    """One `pgq run` subprocess and its log file."""

    worker_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = False  # SIGSTOPped by the test

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def log(self) -> str:
        """Everything the worker wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        """Whether the process has not exited."""
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process exited, else None."""
        return self.process.poll()

    def send(self, sig: signal.Signals) -> None:
        """Send `sig` to the worker (SIGKILL, SIGSTOP, SIGCONT, SIGTERM...)."""
        if self.alive():
            self.process.send_signal(sig)
        if sig is signal.SIGSTOP:
            self.stopped = True
        elif sig is signal.SIGCONT:
            self.stopped = False

    def kill(self) -> None:
        """SIGKILL: the worker dies without any cleanup."""
        self.send(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: the worker drains and exits."""
        self.send(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; returns its exit status."""
        await wait_until(
            lambda: not self.alive(),
            timeout=timeout,
            what=f"worker {self.worker_id} to exit",
            diagnostics=self.tail,
        )
        code = self.process.poll()
        assert code is not None
        return code

    def tail(self, lines: int = 60) -> str:
        """The last lines of the log, for failure messages."""
        text = self.log().splitlines()[-lines:]
        return f"--- {self.worker_id} (pid {self.pid}, rc {self.returncode}) ---\n" + "\n".join(
            text
        )


@dataclass
class WorkerFleet:
    """Starts and tracks worker subprocesses that share one database."""

    project_root: Path
    dsn: str
    log_dir: Path
    base_env: dict[str, str] = field(default_factory=dict)
    # DATABASE_DIRECT_URL: PostgreSQL itself, when `dsn` is a pooler in transaction mode.
    direct_dsn: str | None = None
    pgq_args: tuple[str, ...] = PGQ_ARGS
    workers: list[WorkerProcess] = field(default_factory=list)
    _started: int = 0

    def start(
        self,
        worker_id: str | None = None,
        *,
        queues: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        via: Callable[[list[str]], list[str]] | None = None,
    ) -> WorkerProcess:
        """Start one worker serving `queues` ({queue: concurrency}, default etl.default x2).

        `via` rewrites the command line, e.g. to run it in another network namespace.
        """
        self._started += 1
        worker_id = worker_id or f"w{self._started}"
        queues = queues or {"etl.default": 2}
        process_env = {
            **os.environ,
            **FAST_ENV,
            **self.base_env,
            "DATABASE_URL": self.dsn,
            "WORKER_ID": worker_id,
            "WORKERS_JSON": json.dumps(
                [{"queue": name, "concurrency": n} for name, n in queues.items()]
            ),
            "PYTHONUNBUFFERED": "1",
        }
        # The fleet's own or none: a DATABASE_DIRECT_URL of the test's environment must not leak.
        process_env.pop("DATABASE_DIRECT_URL", None)
        if self.direct_dsn is not None:
            process_env["DATABASE_DIRECT_URL"] = self.direct_dsn
        process_env.update(env or {})
        log_path = self.log_dir / f"worker-{worker_id}-{self._started}.log"
        with log_path.open("wb") as log_file:
            argv = [sys.executable, "-m", "pgqueuer", "run", *self.pgq_args, "worker.main:factory"]
            process = subprocess.Popen(
                via(argv) if via is not None else argv,
                cwd=self.project_root,
                env=process_env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(worker_id=worker_id, process=process, log_path=log_path)
        self.workers.append(worker)
        return worker

    async def start_ready(
        self,
        worker_id: str | None = None,
        *,
        queues: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        via: Callable[[list[str]], list[str]] | None = None,
        timeout: float = 30.0,
    ) -> WorkerProcess:
        """Start a worker and wait until it logged that it serves its queues."""
        worker = self.start(worker_id, queues=queues, env=env, via=via)
        await self.wait_ready(worker, timeout=timeout)
        return worker

    async def wait_ready(self, worker: WorkerProcess, *, timeout: float = 30.0) -> None:
        """Wait for the worker's start-up line; fails early if the process died."""

        def ready() -> bool:
            if not worker.alive():
                raise AssertionError(f"worker died during start-up\n{worker.tail()}")
            return READY_LINE in worker.log()

        await wait_until(
            ready,
            timeout=timeout,
            what=f"worker {worker.worker_id} start-up",
            diagnostics=worker.tail,
        )

    def by_id(self, worker_id: str) -> WorkerProcess:
        """The most recently started worker with this id."""
        for worker in reversed(self.workers):
            if worker.worker_id == worker_id:
                return worker
        raise KeyError(worker_id)

    def alive(self) -> list[WorkerProcess]:
        """Workers whose process is still running."""
        return [w for w in self.workers if w.alive()]

    def diagnostics(self) -> str:
        """Every worker's log tail, for failure messages."""
        return "\n".join(worker.tail() for worker in self.workers)

    def stop_all(self, timeout: float = STOP_TIMEOUT_SEC) -> None:
        """SIGCONT and SIGTERM every live worker, then SIGKILL whoever outlives `timeout`."""
        for worker in self.workers:
            if worker.alive():
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGCONT)
                    worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                worker.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=5)


@contextlib.contextmanager
def worker_fleet(
    project_root: Path,
    dsn: str,
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    pgq_args: tuple[str, ...] = PGQ_ARGS,
    direct_dsn: str | None = None,
) -> Iterator[WorkerFleet]:
    """A fleet of worker subprocesses on `dsn`, all stopped when the block exits.

    With `direct_dsn` (DATABASE_DIRECT_URL), `dsn` may be a pooler in transaction mode.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    fleet = WorkerFleet(
        project_root=project_root,
        dsn=dsn,
        log_dir=log_dir,
        base_env=dict(env or {}),
        pgq_args=pgq_args,
        direct_dsn=direct_dsn,
    )
    try:
        yield fleet
    finally:
        fleet.stop_all()
