"""A PgBouncer of one test's own, in front of a given PostgreSQL, started from the documented ini.

The configuration is docs/pgbouncer-example.md's `pgbouncer-ini` block; only what must differ
on a test machine is replaced: the server's host and port, where PgBouncer listens, its
files (log to the captured stderr, no pid file, no Unix socket) and the auth file, which
lists the one user it is given with the server's password: clients log in to PgBouncer with
SCRAM, as documented, and PgBouncer to the server with the same password. Only a server
without a password (a DATABASE_URL that trusts loopback) makes PgBouncer trust its clients.
The pool mode and the pool size may be chosen; every other line is the documented one.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import csv
import io
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import pytest

from app.devserver.embedded_postgres import find_bindir, free_port
from tests.support.doc_examples import example_block
from tests.support.waiting import wait_until

DOC_EXAMPLE = "pgbouncer-ini"
START_TIMEOUT_SEC = 15.0
STOP_TIMEOUT_SEC = 10.0


def pgbouncer_missing() -> str | None:
    """None when PgBouncer can be started here, else why not (for a skip message)."""
    if shutil.which("pgbouncer") is None:
        return "pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)"
    return None


def require_pgbouncer() -> None:
    """Skip without PgBouncer, or fail when the run demands it (DL_REQUIRE_PGBOUNCER=1)."""
    reason = pgbouncer_missing()
    if reason is None:
        return
    if os.environ.get("DL_REQUIRE_PGBOUNCER") == "1":
        pytest.fail(f"DL_REQUIRE_PGBOUNCER=1 but {reason}")
    pytest.skip(reason)


def documented_ini() -> configparser.ConfigParser:
    """The documented configuration, parsed."""
    # No interpolation: a value may hold `%`. Keys keep their case (`*` and database names).
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(example_block(DOC_EXAMPLE).code)
    return parser


def render_ini(
    *,
    server_host: str,
    server_port: int,
    listen_port: int,
    auth_file: Path,
    user: str,
    trust: bool = False,
    pool_mode: str | None = None,
    default_pool_size: int | None = None,
) -> str:
    """The documented ini aimed at `server_host:server_port`, listening on loopback."""
    ini = documented_ini()
    databases = ini["databases"]
    for name, value in databases.items():
        # Only host and port change: the rest of each entry (dbname, pool_size...) stays.
        fields = dict(part.split("=", 1) for part in value.split())
        fields.update(host=server_host, port=str(server_port))
        databases[name] = " ".join(f"{key}={val}" for key, val in fields.items())
    bouncer = ini["pgbouncer"]
    bouncer.update(
        {
            "listen_addr": "127.0.0.1",
            "listen_port": str(listen_port),
            "unix_socket_dir": "",
            "logfile": "",  # it logs to stderr, which the fixture keeps in a file
            "pidfile": "",
            "auth_file": str(auth_file),
            # The admin console, for the tests' SHOW CLIENTS / SHOW POOLS.
            "admin_users": user,
        }
    )
    if trust:
        bouncer["auth_type"] = "trust"
    if pool_mode is not None:
        bouncer["pool_mode"] = pool_mode
    if default_pool_size is not None:
        bouncer["default_pool_size"] = str(default_pool_size)
    out = io.StringIO()
    ini.write(out)
    return out.getvalue()


def _root_wrapper() -> list[str]:
    """PgBouncer refuses to run as root, and CI is root: run it as `nobody` in a user
    namespace, as app/devserver/embedded_postgres.py runs PostgreSQL (no chown needed)."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    return ["unshare", "--user", f"--map-user={nobody.pw_uid}", f"--map-group={nobody.pw_gid}"]


@dataclass
class PgBouncer:
    """A running PgBouncer: where it listens and what it was started with."""

    port: int
    user: str
    password: str
    pool_mode: str
    process: subprocess.Popen[bytes]
    ini_path: Path
    log_path: Path

    def route(self, dsn: str) -> str:
        """The same database (user, name, options) reached through this PgBouncer."""
        parts = urlsplit(dsn)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def log_tail(self, chars: int = 3000) -> str:
        """The end of PgBouncer's log, for failure messages."""
        path = self.log_path
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    async def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on the admin console (CLIENTS, SERVERS, POOLS...), as rows.

        The console speaks only the simple query protocol, which psql uses.
        """
        psql = str(find_bindir() / "psql")
        if not Path(psql).exists():
            psql = shutil.which("psql") or "psql"
        process = await asyncio.create_subprocess_exec(
            psql,
            "--csv",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            "pgbouncer",
            "-c",
            f"SHOW {what}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # The password through the environment, never on a command line.
            env={**os.environ, "PGPASSWORD": self.password},
        )
        stdout, stderr = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"SHOW {what} failed: {stderr.decode().strip()}")
        return list(csv.DictReader(io.StringIO(stdout.decode())))

    def stop(self) -> None:
        """SIGTERM (PgBouncer's immediate shutdown), then SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SEC)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@contextlib.asynccontextmanager
async def pgbouncer_in_front(
    server_dsn: str,
    workdir: Path,
    *,
    pool_mode: str = "transaction",
    default_pool_size: int | None = None,
) -> AsyncIterator[PgBouncer]:
    """Start PgBouncer in front of `server_dsn`'s server; wait until it answers; stop it after.

    It answers once a `SELECT 1` through it reaches `server_dsn`'s database. The pool size
    is the documented one unless `default_pool_size` is given.
    """
    require_pgbouncer()
    target = urlsplit(server_dsn)
    user = unquote(target.username or "postgres")
    password = unquote(target.password or "")
    workdir.mkdir(parents=True, exist_ok=True)
    auth_file = workdir / "userlist.txt"
    # A plain-text password: PgBouncer checks its clients' SCRAM against it and logs in to
    # the server with it. The file is created readable by its owner only.
    fd = os.open(auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f'"{user}" "{password}"\n')
    port = free_port()
    ini_path = workdir / "pgbouncer.ini"
    ini_path.write_text(
        render_ini(
            server_host=target.hostname or "127.0.0.1",
            server_port=target.port or 5432,
            listen_port=port,
            auth_file=auth_file,
            user=user,
            trust=not password,
            pool_mode=pool_mode,
            default_pool_size=default_pool_size,
        )
    )
    log_path = workdir / "pgbouncer.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*_root_wrapper(), "pgbouncer", str(ini_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    bouncer = PgBouncer(port, user, password, pool_mode, process, ini_path, log_path)
    try:
        await _wait_answering(bouncer, server_dsn)
        yield bouncer
    finally:
        bouncer.stop()


async def _wait_answering(bouncer: PgBouncer, server_dsn: str) -> None:
    async def answers() -> bool:
        if bouncer.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited at start:\n{bouncer.log_tail()}")
        try:
            # No statement cache: through transaction pooling a named statement may be gone.
            connection = await asyncpg.connect(
                bouncer.route(server_dsn), timeout=2, statement_cache_size=0
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        try:
            await connection.execute("SELECT 1")
        finally:
            await connection.close()
        return True

    await wait_until(
        answers,
        timeout=START_TIMEOUT_SEC,
        what="pgbouncer to answer",
        diagnostics=bouncer.log_tail,
    )
