"""`make run`: embedded PostgreSQL (unless configured), migrations, the API and one worker.

Children run in their own sessions so that a terminal's Ctrl-C reaches only this process,
which then stops them in order: API and worker first, PostgreSQL last. If this process is
killed outright, each child gets SIGTERM from the kernel (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from app.db.migrate import PROJECT_ROOT, upgrade_to_head
from app.devserver.embedded_postgres import EmbeddedPostgres
from app.devserver.errors import EmbeddedPostgresError
from app.devserver.ports import accepts_connections, port_in_use
from app.settings import Settings

_PR_SET_PDEATHSIG = 1
# `make run`'s first worker serves http://127.0.0.1:9464/metrics, the next 9465, ...
DEV_WORKER_METRICS_PORT = 9464
# A worker that loses the database (PostgreSQL restarted, a network cut) ends its run and
# pgqueuer starts a new one a second later; docs/operations.md's worker command has the same flags.
WORKER_RESTART_ARGS = ("--restart-on-failure", "--restart-delay", "1")


def _die_with_parent(sig: int) -> Callable[[], None]:
    """A preexec_fn asking the kernel to signal the child when this process dies."""

    def apply() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)

    return apply


def embedded_data_dir() -> Path:
    """Where `make run` keeps its PostgreSQL data (git-ignored, reused)."""
    return Path(os.environ.get("DL_EMBEDDED_PG_DIR", PROJECT_ROOT / ".data" / "postgres"))


def embedded_port() -> int:
    """The loopback port of the embedded PostgreSQL."""
    return int(os.environ.get("DL_EMBEDDED_PG_PORT", "54329"))


class Supervisor:
    """Starts the processes of a development deployment and stops them all on a signal."""

    def __init__(self, settings: Settings, worker_count: int = 1) -> None:
        self.settings = settings
        self.worker_count = worker_count
        self.postgres: EmbeddedPostgres | None = None
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def run(self) -> int:
        """Run until a signal or a child's exit; returns the exit code."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        env = dict(os.environ)
        try:
            if not self.settings.has_database:
                if port_in_use("127.0.0.1", embedded_port()):
                    _say(
                        f"DL_EMBEDDED_PG_PORT {embedded_port()} on 127.0.0.1 is in use; stop"
                        " what listens there or set DL_EMBEDDED_PG_PORT to a free port"
                    )
                    return 1
                self.postgres = EmbeddedPostgres(embedded_data_dir(), embedded_port())
                try:
                    self.postgres.start()
                except EmbeddedPostgresError as error:
                    _say(str(error))  # says what to do; a traceback would only hide it
                    return 1
                env["DATABASE_URL"] = self.postgres.url
                # The password stays out of the terminal (and whatever records it): the
                # line names the file that holds it instead (docs/development.md).
                _say(
                    f"embedded PostgreSQL at {self.postgres.masked_url} (data in "
                    f"{self.postgres.data_dir}; password in {self.postgres.password_file})"
                )
            settings = self.settings
            if self.postgres is not None:
                settings = settings.model_copy(update={"database_url": self.postgres.url})
            upgrade_to_head(settings.session_sqlalchemy_url, settings.pg_schema_queue)
            _say("migrations applied")
            env.update(self._dev_logging())
            self._spawn("api", [sys.executable, "-m", "app", "serve"], env)
            for index in range(self.worker_count):
                worker_env = {**env, "WORKER_ID": env.get("WORKER_ID", f"dev-worker-{index + 1}")}
                worker_env.update(self._dev_worker_metrics(index))
                self._spawn(
                    f"worker-{index + 1}",
                    [
                        sys.executable,
                        "-m",
                        "pgqueuer",
                        "run",
                        *WORKER_RESTART_ARGS,
                        "worker.main:factory",
                    ],
                    worker_env,
                )
            if not self._wait_for_api():
                return self._watch()  # a child exited or a signal came: say which, stop
            _say(f"API on http://{self.settings.app_host}:{self.settings.app_port}; Ctrl-C stops")
            return self._watch()
        finally:
            self._stop_all()

    def _dev_logging(self) -> dict[str, str]:
        """Console logs for people, unless LOG_FORMAT was set (environment or .env)."""
        if "log_format" in self.settings.model_fields_set:
            return {}
        return {"LOG_FORMAT": "console"}

    def _dev_worker_metrics(self, index: int) -> dict[str, str]:
        """Each worker's metrics on its own loopback port: WORKER_METRICS_PORT (default
        DEV_WORKER_METRICS_PORT) plus the worker's index; 0 turns them off."""
        explicit = "worker_metrics_port" in self.settings.model_fields_set
        base = self.settings.worker_metrics_port if explicit else DEV_WORKER_METRICS_PORT
        env = {"WORKER_METRICS_PORT": str(base + index if base else 0)}
        if "worker_metrics_host" not in self.settings.model_fields_set:
            env["WORKER_METRICS_HOST"] = self.settings.app_host
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGTERM),
        )
        self.children.append((name, process))

    def _wait_for_api(self) -> bool:
        """Whether the API accepts connections, before the line that says where it is.

        False as soon as a child exits or a signal asks to stop; `_watch` then tells which.
        """
        while not self.stopping:
            if any(process.poll() is not None for _, process in self.children):
                return False
            if accepts_connections(self.settings.app_host, self.settings.app_port):
                return True
            time.sleep(0.1)
        return False

    def _watch(self) -> int:
        parent = os.getppid()
        while not self.stopping:
            if os.getppid() != parent:  # `make` (or the shell) that started us is gone
                _say("parent process exited; stopping everything")
                return 1
            for name, process in self.children:
                code = process.poll()
                if code is not None:
                    _say(f"{name} exited with code {code}; stopping everything")
                    return code or 1
            time.sleep(0.2)
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:  # a second signal: stop now
            for _, process in self.children:
                if process.poll() is None:
                    process.kill()
        self.stopping = True

    def _stop_all(self) -> None:
        for _, process in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.dl_shutdown_timeout_sec + 5
        for name, process in self.children:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"{name} did not stop in time; killing it")
                process.kill()
                process.wait()
        if self.postgres is not None and self.postgres.process is not None:
            self.postgres.stop()
            _say("embedded PostgreSQL stopped")


def _say(message: str) -> None:
    print(f"[dataloader] {message}", file=sys.stderr, flush=True)
