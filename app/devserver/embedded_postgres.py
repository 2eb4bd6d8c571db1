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
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from app.db.server_admin import create_database_statement, database_exists_query
from app.devserver.embedded_auth import AUTH_METHOD, password_path, read_password, write_hba_conf
from app.devserver.embedded_cluster import create_cluster, give_trust_cluster_a_password
from app.devserver.errors import EmbeddedPostgresError
from app.observability.masking import mask_url_passwords


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
            create_cluster(self.data_dir, self.user, bindir, wrapper)
        elif not self.password_file.exists():
            give_trust_cluster_a_password(self.data_dir, self.user, bindir, wrapper)
        try:
            self.password = read_password(self.password_file)
        except (OSError, ValueError) as error:
            raise EmbeddedPostgresError(
                f"cannot read the password of {self.data_dir} ({error}); "
                "start afresh with `make clean-data`"
            ) from error
        # Rewritten at every start: whatever pg_hba.conf says, this server trusts no one.
        write_hba_conf(self.data_dir, self.client_networks)
        settings = {
            "max_connections": "200",
            **self.extra_settings,
            # After extra_settings, which cannot widen who may connect.
            "listen_addresses": ",".join(self.listen_addresses),
            "port": str(self.port),
            "unix_socket_directories": "",
            "password_encryption": AUTH_METHOD,
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
