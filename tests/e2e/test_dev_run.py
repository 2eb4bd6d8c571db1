"""`python -m app run` (what `make run` calls): embedded PostgreSQL, API, worker, clean stop.

The embedded PostgreSQL takes only its generated password, on loopback only, and a data
folder from before passwords is given one.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from app.devserver.embedded_postgres import find_bindir, free_port, root_wrapper
from tests.support.waiting import wait_until

PASSWORD_FILE = "dataloader-password"


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class DevRun:
    """A running `python -m app run`: its API, its embedded server and its output."""

    process: subprocess.Popen[bytes]
    base: str
    pg_dir: Path
    pg_port: int
    log_path: Path

    @property
    def password(self) -> str:
        return (self.pg_dir / PASSWORD_FILE).read_text().strip()

    def dsn(self, password: str | None, host: str = "127.0.0.1") -> str:
        auth = f"postgres:{password}" if password is not None else "postgres"
        return f"postgresql://{auth}@{host}:{self.pg_port}/dataloader"


def _dev_run_env(tmp_path: Path, port: int, pg_port: int) -> dict[str, str]:
    """This environment without a database (nor a libpq password), the embedded one in
    tmp_path/pg."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "PG_HOST", "WORKERS_JSON", "PGPASSWORD", "PGPASSFILE"}
    }
    env.update(
        APP_PORT=str(port),
        DL_EMBEDDED_PG_DIR=str(tmp_path / "pg"),
        DL_EMBEDDED_PG_PORT=str(pg_port),
        DL_HEARTBEAT_SEC="0.5",
    )
    return env


@contextmanager
def dev_run(tmp_path: Path, project_root: Path) -> Iterator[DevRun]:
    """Start `python -m app run` on an embedded server in tmp_path/pg; SIGTERM it after."""
    port, pg_port = free_port(), free_port()
    env = _dev_run_env(tmp_path, port, pg_port)
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "run"],
            cwd=project_root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield DevRun(process, f"http://127.0.0.1:{port}", tmp_path / "pg", pg_port, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


async def _run_a_job(base: str) -> None:
    created = httpx.post(
        f"{base}/api/v1/jobs/trigger",
        json={
            "queue": "etl.default",
            "task": "noop",
            "args": {"steps": 1, "sleep": 0.1},
            "lock_key": "dev-run-auth",
        },
    ).json()

    def finished() -> bool:
        job = httpx.get(f"{base}/api/v1/jobs/{created['job_id']}/status").json()
        return bool(job["status"] == "succeeded")

    await wait_until(finished, timeout=30, interval=0.1, what="the job to succeed")


async def _refused(dsn: str) -> BaseException:
    """The error a connection attempt to `dsn` ends with (the test fails if it connects)."""
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        return error
    await connection.close()
    pytest.fail(f"connected to the embedded PostgreSQL with {dsn!r}")


def _non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine other than loopback, if it has one."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_dev_run_serves_runs_a_job_and_stops_cleanly(
    tmp_path: Path, project_root: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "PG_HOST", "WORKERS_JSON"}
    }
    env.update(
        APP_PORT=str(port),
        DL_EMBEDDED_PG_DIR=str(tmp_path / "pg"),
        DL_EMBEDDED_PG_PORT=str(free_port()),
        DL_HEARTBEAT_SEC="0.5",
    )
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "run"],
        cwd=project_root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    children: list[psutil.Process] = []
    try:
        await wait_until(lambda: _healthy(base), timeout=60, interval=0.1, what="the API")
        children = _descendants(process.pid)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        assert "postgres" in names
        assert "pgqueuer" in names
        assert "app serve" in names

        created = httpx.post(
            f"{base}/api/v1/jobs/trigger",
            json={
                "queue": "etl.default",
                "task": "noop",
                "args": {"steps": 2, "sleep": 0.2},
                "lock_key": "dev-run",
            },
        ).json()
        assert created["status"] == "queued"

        def finished() -> dict[str, object] | None:
            job = httpx.get(f"{base}/api/v1/jobs/{created['job_id']}/status").json()
            return job if job["status"] == "succeeded" else None

        job = await wait_until(finished, timeout=30, interval=0.1, what="the job to succeed")
        assert job["progress"] == {"processed": 2, "total": 2}
    finally:
        process.send_signal(stop_signal)
        code = process.wait(timeout=60)
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert code == 0, output
    # The URL is shown with its password masked, next to the file that holds the password.
    password = (tmp_path / "pg" / PASSWORD_FILE).read_text().strip()
    assert password not in output
    assert re.search(
        rf"embedded PostgreSQL at postgresql://postgres:\*\*\*@127\.0\.0\.1:\d+/dataloader "
        rf".*password in {re.escape(str(tmp_path / 'pg' / PASSWORD_FILE))}",
        output,
    ), output
    await wait_until(
        lambda: not any(child.is_running() for child in children),
        timeout=10,
        interval=0.1,
        what="children to exit",
    )
    assert (tmp_path / "pg" / "PG_VERSION").exists()  # data kept for the next start


async def test_dev_run_postgres_takes_only_its_password_on_loopback(
    tmp_path: Path, project_root: Path
) -> None:
    with dev_run(tmp_path, project_root) as run:
        await wait_until(lambda: _healthy(run.base), timeout=60, interval=0.1, what="the API")
        password_file = run.pg_dir / PASSWORD_FILE
        mode = password_file.stat().st_mode
        assert stat.S_ISREG(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert len(run.password) >= 40  # 32 random bytes, URL-safe base64

        # The service itself works with the password (the API and the worker have it).
        await _run_a_job(run.base)

        no_password = await _refused(run.dsn(None))
        wrong_password = await _refused(run.dsn("not-the-password"))
        for refusal in (no_password, wrong_password):
            assert isinstance(refusal, asyncpg.InvalidPasswordError), repr(refusal)

        connection = await asyncpg.connect(run.dsn(run.password))
        try:
            assert await connection.fetchval("SHOW listen_addresses") == "127.0.0.1"
            assert await connection.fetchval("SHOW unix_socket_directories") == ""
            rules = await connection.fetch(
                "SELECT type, address, auth_method FROM pg_hba_file_rules"
            )
        finally:
            await connection.close()
        assert [tuple(rule) for rule in rules] == [("host", "127.0.0.1", "scram-sha-256")]

        # Nothing answers on the machine's other addresses, with the password or without.
        address = _non_loopback_ipv4()
        if address is not None:
            refusal = await _refused(run.dsn(run.password, host=address))
            assert isinstance(refusal, ConnectionRefusedError), repr(refusal)
    assert run.password not in run.log_path.read_text()


@asynccontextmanager
async def trust_era_server(pg_dir: Path) -> AsyncIterator[int]:
    """A data folder as `make run` made it before passwords (initdb --auth=trust) holding a
    table of the user's, with its server running; yields the server's port."""
    subprocess.run(
        [
            *root_wrapper(),
            str(find_bindir() / "initdb"),
            "-D",
            str(pg_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--locale=C",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    assert "trust" in (pg_dir / "pg_hba.conf").read_text()
    port = free_port()
    postgres = subprocess.Popen(
        [
            *root_wrapper(),
            str(find_bindir() / "postgres"),
            "-D",
            str(pg_dir),
            "-clisten_addresses=127.0.0.1",
            f"-cport={port}",
            "-cunix_socket_directories=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        async def trust_answers() -> bool:
            try:
                connection = await asyncpg.connect(
                    f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=2
                )
            except (OSError, asyncpg.PostgresError):
                return False
            await connection.execute("CREATE DATABASE dataloader")
            await connection.close()
            return True

        await wait_until(trust_answers, timeout=30, interval=0.1, what="the trust-era server")
        old = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/dataloader")
        await old.execute("CREATE TABLE kept_from_before (note text)")
        await old.execute("INSERT INTO kept_from_before VALUES ('still here')")
        await old.close()
        yield port
    finally:
        postgres.terminate()
        postgres.wait(timeout=30)


async def test_dev_run_gives_a_trust_era_data_folder_a_password(
    tmp_path: Path, project_root: Path
) -> None:
    pg_dir = tmp_path / "pg"
    async with trust_era_server(pg_dir):
        pass  # stopped: its data folder is what the next `make run` finds
    assert not (pg_dir / PASSWORD_FILE).exists()

    with dev_run(tmp_path, project_root) as run:
        await wait_until(lambda: _healthy(run.base), timeout=60, interval=0.1, what="the API")
        assert stat.S_IMODE((pg_dir / PASSWORD_FILE).stat().st_mode) == 0o600
        await _run_a_job(run.base)
        refusal = await _refused(run.dsn(None))
        assert isinstance(refusal, asyncpg.InvalidPasswordError), repr(refusal)
        connection = await asyncpg.connect(run.dsn(run.password))
        try:
            assert await connection.fetchval("SELECT note FROM kept_from_before") == "still here"
        finally:
            await connection.close()
    assert "trust" not in (pg_dir / "pg_hba.conf").read_text()
    assert run.password not in run.log_path.read_text()


async def test_dev_run_refuses_a_trust_era_data_folder_it_cannot_change_in_one_line(
    tmp_path: Path, project_root: Path
) -> None:
    pg_dir = tmp_path / "pg"
    async with trust_era_server(pg_dir) as old_port:  # still running on the folder
        result = subprocess.run(
            [sys.executable, "-m", "app", "run"],
            cwd=project_root,
            env=_dev_run_env(tmp_path, free_port(), free_port()),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"[dataloader] {pg_dir} is from before passwords and could not be given one "
            '(lock file "postmaster.pid" already exists); stop the server that uses it and '
            "start again, or start afresh with `make clean-data`"
        ]
        # Nothing was changed: no password file, and the old server still answers as before.
        assert not (pg_dir / PASSWORD_FILE).exists()
        assert not list(pg_dir.glob(f"{PASSWORD_FILE}*"))
        old = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{old_port}/dataloader")
        await old.close()


@contextmanager
def _listener_on_a_free_port() -> Iterator[int]:
    """A loopback port that another process (this one) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _start_once(
    command: str, env: dict[str, str], project_root: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", command],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dev_run_with_a_busy_api_port_is_one_line_naming_app_port(
    tmp_path: Path, project_root: Path
) -> None:
    with _listener_on_a_free_port() as busy:
        result = _start_once("run", _dev_run_env(tmp_path, busy, free_port()), project_root)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"dataloader: APP_PORT {busy} on 127.0.0.1 is in use;"
        " stop what listens there or set APP_PORT to a free port"
    ]
    assert not (tmp_path / "pg").exists()  # nothing was started


def test_serve_with_a_busy_port_is_one_line_naming_app_port(
    tmp_path: Path, project_root: Path
) -> None:
    env = _dev_run_env(tmp_path, 0, free_port())
    # Never reached: the port is checked before anything connects.
    env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    with _listener_on_a_free_port() as busy:
        env["APP_PORT"] = str(busy)
        result = _start_once("serve", env, project_root)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"dataloader: APP_PORT {busy} on 127.0.0.1 is in use;"
        " stop what listens there or set APP_PORT to a free port"
    ]


def test_dev_run_with_a_busy_postgres_port_is_one_line_naming_its_setting(
    tmp_path: Path, project_root: Path
) -> None:
    with _listener_on_a_free_port() as busy:
        result = _start_once("run", _dev_run_env(tmp_path, free_port(), busy), project_root)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"[dataloader] DL_EMBEDDED_PG_PORT {busy} on 127.0.0.1 is in use;"
        " stop what listens there or set DL_EMBEDDED_PG_PORT to a free port"
    ]


async def test_dev_run_says_where_the_api_is_only_once_it_listens(
    tmp_path: Path, project_root: Path
) -> None:
    with dev_run(tmp_path, project_root) as run:
        port = int(run.base.rsplit(":", 1)[1])

        def api_line_printed() -> bool:
            return f"API on http://127.0.0.1:{port}" in run.log_path.read_text()

        await wait_until(api_line_printed, timeout=90, interval=0.02, what="the 'API on' line")
        # The line came after the bind: the port takes a connection at once.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
