"""A private PostgreSQL server for `make run`, tests and benchmarks when no DATABASE_URL is set.

It listens on loopback TCP only (no Unix socket) and takes only the superuser's SCRAM
password, generated at initdb and kept in the data folder (app/devserver/embedded_auth.py).

PostgreSQL refuses to run as root, and CI is root: as root the server runs inside a user
namespace where root is mapped to `nobody`, which needs no chown of the data folder; files
root creates (the password file included) look owned by the server from inside.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from app.db.server_admin import (
    create_database_statement,
    database_exists_query,
    set_password_statement,
)
from app.devserver.embedded_auth import (
    AUTH_METHOD,
    new_password,
    password_path,
    read_password,
    write_hba_conf,
    write_password_file,
)
from app.observability.masking import mask_url_passwords


class EmbeddedPostgresError(Exception):
    """The embedded PostgreSQL server could not be set up or started."""


def find_bindir() -> Path:
    """The folder holding initdb and postgres: pg_config's, PATH's, or Debian's newest."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found (initdb, postgres); install PostgreSQL "
        "(Debian: apt-get install postgresql) or set DATABASE_URL"
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def root_wrapper() -> list[str]:
    """The command prefix that lets root run PostgreSQL (empty for other users)."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    return [
        "unshare",
        "--user",
        f"--map-user={nobody.pw_uid}",
        f"--map-group={nobody.pw_gid}",
        "--",
    ]


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server on loopback TCP with its data in `data_dir`.

    `listen_addresses` and `client_networks` are for tests that reach the server over
    another network; both take the password as loopback does.
    """

    data_dir: Path
    port: int
    user: str = "postgres"
    database: str = "dataloader"
    extra_settings: dict[str, str] = field(default_factory=dict)
    listen_addresses: tuple[str, ...] = ("127.0.0.1",)
    client_networks: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The DSN of the application database, password included: never print it."""
        if self.password is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has not been started")
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{self.database}"
        )

    @property
    def masked_url(self) -> str:
        """The DSN with its password masked, for people and logs."""
        return mask_url_passwords(self.url)

    @property
    def password_file(self) -> Path:
        """The file holding the superuser's password (mode 0600)."""
        return password_path(self.data_dir)

    @property
    def log_file(self) -> Path:
        """Where the server writes its log."""
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, timeout_sec: float = 30) -> None:
        """initdb on first use, start the server, wait for it, create the database.

        A data folder from before passwords (trust authentication) gets a password first.
        """
        bindir = find_bindir()
        wrapper = root_wrapper()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir, wrapper)
        elif not self.password_file.exists():
            self._set_password_offline(bindir, wrapper)
        self.password = read_password(self.password_file)
        # Rewritten at every start: whatever pg_hba.conf says, this server trusts no one.
        write_hba_conf(self.data_dir, self.client_networks)
        settings = {
            "listen_addresses": ",".join(self.listen_addresses),
            "port": str(self.port),
            "unix_socket_directories": "",
            "password_encryption": AUTH_METHOD,
            "max_connections": "200",
            **self.extra_settings,
        }
        args = [f"-c{key}={value}" for key, value in settings.items()]
        log = self.log_file.open("ab")
        # Own session: a terminal's Ctrl-C reaches the supervisor, which stops us last.
        self.process = subprocess.Popen(
            [*wrapper, str(bindir / "postgres"), "-D", str(self.data_dir), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(bindir, timeout_sec)
        self._create_database(bindir)

    def _initdb(self, bindir: Path, wrapper: list[str]) -> None:
        """A new cluster with a generated password, made aside and moved into place whole.

        initdb wants an empty folder, so the password file is written next to it and moved
        in afterwards; moving the finished folder in last means an interrupted initdb never
        leaves a cluster without its password file behind.
        """
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster; remove it"
            )
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.data_dir.name}-", dir=self.data_dir.parent))
        try:
            pwfile = staging / "password"
            write_password_file(pwfile, new_password())
            cluster = staging / "data"
            result = subprocess.run(
                [
                    *wrapper,
                    str(bindir / "initdb"),
                    "-D",
                    str(cluster),
                    "-U",
                    self.user,
                    f"--auth={AUTH_METHOD}",
                    f"--pwfile={pwfile}",
                    "--locale=C",
                    "-E",
                    "UTF8",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()}")
            os.replace(pwfile, password_path(cluster))
            os.replace(cluster, self.data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _set_password_offline(self, bindir: Path, wrapper: list[str]) -> None:
        """Give a trust-era cluster a password, in single-user mode: no connection is
        accepted while it runs, so there is no moment at which the old trust is usable."""
        password = new_password()
        pending = self.data_dir / f"{self.password_file.name}.new"
        pending.unlink(missing_ok=True)
        write_password_file(pending, password)
        result = subprocess.run(
            [
                *wrapper,
                str(bindir / "postgres"),
                "--single",
                "-D",
                str(self.data_dir),
                f"-cpassword_encryption={AUTH_METHOD}",
                # A failed statement is not echoed into the output (it holds the password).
                "-clog_min_error_statement=panic",
                "postgres",
            ],
            input=set_password_statement(self.user, password) + "\n",
            capture_output=True,
            text=True,
            check=False,
        )
        # The single-user backend exits 0 even when the statement failed.
        problems = [
            line.split(marker, 1)[1].strip()
            for line in result.stderr.replace(password, "***").splitlines()
            for marker in ("FATAL:", "ERROR:")
            if marker in line
        ]
        if result.returncode != 0 or problems:
            pending.unlink(missing_ok=True)
            raise EmbeddedPostgresError(
                f"{self.data_dir} is from before passwords and could not be given one "
                f"({'; '.join(problems) or f'exit code {result.returncode}'}); stop the "
                "server that uses it and start again, or start afresh with `make clean-data`"
            )
        write_hba_conf(self.data_dir)
        os.replace(pending, self.password_file)

    def _wait_ready(self, bindir: Path, timeout_sec: float) -> None:
        deadline = time.monotonic() + timeout_sec
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise EmbeddedPostgresError(f"postgres exited at start:\n{tail}")
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedPostgresError(f"postgres did not accept connections in {timeout_sec}s")

    def _create_database(self, bindir: Path) -> None:
        if not self.database.replace("_", "").isalnum():
            raise EmbeddedPostgresError(f"database name {self.database!r} is not an identifier")
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        # The password goes through the environment: a command line is visible to everyone.
        env = {**os.environ, "PGPASSWORD": self.password or ""}
        query = database_exists_query(self.database)
        exists = subprocess.run(
            [*psql, "-d", "postgres", "-tAc", query],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        if exists.stdout.strip() != "1":
            subprocess.run(
                [*psql, "-d", "postgres", "-qc", create_database_statement(self.database)],
                check=True,
                capture_output=True,
                env=env,
            )

    def stop(self, timeout_sec: float = 30) -> None:
        """Fast shutdown (SIGINT); immediate (SIGQUIT) if it does not stop in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_sec)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=10)
